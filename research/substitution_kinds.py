"""Single substitutions by the kind of word swapped: is any kind as one-sided as the rewordings?

A pair is a single substitution when the rewording rule's canonical word lists (auxiliaries,
you-forms, articles and inflections mapped away: `dupfinder.verdict.rewording.form`) have the same
length and differ in exactly one aligned word ("Where are you from?" / "Where are you going?":
from -> go). Each swapped word is put in one class: a wh-word, a preposition (a fixed list), another
function word (scikit-learn's English stop words, auxiliaries, you-forms, "not") or a content word.
Per pair of classes: the training file's pairs and their duplicate rate, and dev's, with the shipped
verdict stage's accuracy on dev's at its stored threshold. A class whose training pairs are nearly
all non-duplicates could be decided by a rule (as the rewordings are, the other way round); none is.

Usage: python research/substitution_kinds.py [--model DIR] [--out research/results/substitution_kinds.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import environment, print_environment  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"
WH = frozenset("what where when why who whom whose which how".split())
PREPOSITIONS = frozenset(
    "about above across after against along among around at before behind below beneath beside between beyond by "
    "down during except for from in inside into like near of off on onto out outside over past since through "
    "throughout to toward towards under underneath until up upon via with within without".split())


def word_class(word: str, stop_words) -> str:
    if word in WH:
        return "wh"
    if word in PREPOSITIONS:
        return "preposition"
    if word.startswith("<") or word == "not" or word in stop_words:  # <aux>, <you>
        return "function"
    return "content"


def substitution(q1: str, q2: str, config) -> tuple[str, str] | None:
    """The one aligned canonical word two questions differ in, or None."""
    from dupfinder.verdict.rewording import form, text_words

    a = [f for f in map(form, text_words(q1, config)) if f]
    b = [f for f in map(form, text_words(q2, config)) if f]
    if len(a) != len(b) or not a:
        return None
    diff = [(x, y) for x, y in zip(a, b) if x != y]
    return diff[0] if len(diff) == 1 else None


def kinds(pairs, config, stop_words) -> list[str | None]:
    out = []
    for q1, q2 in zip(pairs.texts(1), pairs.texts(2)):
        s = substitution(q1, q2, config)
        out.append(None if s is None else "/".join(sorted(word_class(w, stop_words) for w in s)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--train", default=str(DATA / "train.csv.gz"))
    ap.add_argument("--dev", default=str(DATA / "dev.csv"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "substitution_kinds.json")
    args = ap.parse_args()
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from dupfinder.engine import Engine, load_encoder
    from dupfinder.io import load_pairs

    env = environment()
    print_environment(env)
    engine = Engine(load_encoder(args.model))
    config = engine.encoder.text_config
    train, dev = load_pairs(args.train), load_pairs(args.dev)
    table: dict[str, dict] = defaultdict(lambda: {"train_pairs": 0, "train_duplicates": 0, "dev_pairs": 0, "dev_duplicates": 0,
                                                  "dev_right": 0})
    for kind, label in zip(kinds(train, config, ENGLISH_STOP_WORDS), train.label.tolist()):
        if kind:
            table[kind]["train_pairs"] += 1
            table[kind]["train_duplicates"] += int(label)
    dev_kinds = kinds(dev, config, ENGLISH_STOP_WORDS)
    verdict = engine.verdict(engine.pair_scores(dev))
    for kind, label, dup in zip(dev_kinds, dev.label.tolist(), verdict.tolist()):
        if kind:
            table[kind]["dev_pairs"] += 1
            table[kind]["dev_duplicates"] += int(label)
            table[kind]["dev_right"] += int(bool(dup) == bool(label))
    print(f"\n{'swapped words':<22} {'train pairs':>11} {'dup rate':>8} | {'dev pairs':>9} {'dup rate':>8} {'stage right':>11}")
    rows = {}
    for kind, t in sorted(table.items(), key=lambda kv: -kv[1]["train_pairs"]):
        rate = t["train_duplicates"] / max(1, t["train_pairs"])
        dev_rate = t["dev_duplicates"] / max(1, t["dev_pairs"])
        right = t["dev_right"] / max(1, t["dev_pairs"])
        rows[kind] = {**t, "train_rate": round(rate, 4), "dev_rate": round(dev_rate, 4), "dev_accuracy": round(right, 4)}
        print(f"{kind:<22} {t['train_pairs']:>11,} {rate:>8.3f} | {t['dev_pairs']:>9,} {dev_rate:>8.3f} {right:>11.3f}")
    n_dev = sum(t["dev_pairs"] for t in table.values())
    print(f"\ndev single substitutions: {n_dev:,}, stage right on {sum(t['dev_right'] for t in table.values()) / max(1, n_dev):.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": env, "threshold": engine.threshold, "kinds": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
