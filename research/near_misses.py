"""Near misses: does a model tell a question from the same question with one word changed, as MiniLM does?

"Where are you from?" and "Where are you going?" share all but one word and ask different things;
"How do I learn Python?" and "How can I learn Python?" share all but one word and ask the same.
This makes near misses of dev questions the way `dupfinder teacher --swaps` makes them of training
questions (one word replaced by a word seen in the same context in the training file), scores each
(question, near miss) pair with every model and with all-MiniLM-L6-v2, and reports how well each
model's cosines follow MiniLM's (Spearman), and how often a model calls a duplicate (cosine >= its
tau) a near miss that MiniLM scores below 0.7, where the changed word changed the question.
MiniLM is a reference here, not ground truth. Needs the 'distill' extra.

Needs an older dupfinder: the near misses are made by `near_miss_texts`, which went with `dupfinder
teacher --swaps` (f890df7, measured worse), and --teacher reads the near-miss arrays (`swap_*`)
only such teacher files hold. Without it the script stops with a message; run it in a checkout of
commit a0d98bb (there: `python benchmarks/near_misses.py ...`), which wrote the committed results.

With --teacher FILE (from `dupfinder teacher --swaps N`, made from --train) it also scores a sample
of that file's own near misses, the ones `train --kd-swaps` learns from: how far each model's
cosines are from the training target 1 - stretch x (1 - MiniLM's cosine) (root-mean-square error),
and how many of those MiniLM scores below its dev threshold 0.757 the model calls duplicates.

Usage: python research/near_misses.py [--model DIR ...] [--n 3000] [--threads 2] [--teacher FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import environment, print_environment, set_threads  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"
OLDER = "a0d98bb"  # the last commit with near_miss_texts and teacher --swaps, where this script is benchmarks/near_misses.py
CUT = 0.7  # MiniLM below this: the changed word changed the question (its best dev threshold is 0.757)
MINILM_TAU = 0.757  # MiniLM's best dev threshold: below it, a teacher file's near miss asks something else
NAMED = [("How old are you?", "What is your age?"), ("Where are you from?", "Where are you going?")]


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="model directory; repeat to compare (default: the shipped model)")
    ap.add_argument("--train", default=str(DATA / "train.csv.gz"), help="where replacement words are learned")
    ap.add_argument("--data", default=str(DATA / "dev.csv"), help="questions to make near misses of")
    ap.add_argument("--n", type=int, default=3000, help="near misses made")
    ap.add_argument("--max-tokens", type=int, default=10, help="only questions this short: one word is a larger share of their meaning")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--teacher", default=None, help="a teacher file with near misses of --train's questions: score a sample of them too")
    ap.add_argument("--teacher-sample", type=int, default=5000, help="near misses sampled from --teacher")
    ap.add_argument("--stretch", type=float, default=1.58, help="the --kd-swap-stretch of the training target")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "near_misses.json"))
    args = ap.parse_args()

    try:
        from dupfinder.train.teacher import near_miss_texts
    except ImportError:
        sys.exit(f"near_misses.py needs near_miss_texts, removed from dupfinder with `dupfinder teacher --swaps`; "
                 f"run it in a checkout of commit {OLDER} (git worktree add ../dupfinder-{OLDER} {OLDER}), "
                 f"where it is benchmarks/near_misses.py")
    set_threads(args.threads)
    from dupfinder import load_model
    from dupfinder.io import load_pairs
    from dupfinder.text import tokenize
    from dupfinder.train.teacher import minilm

    env = environment()
    print_environment(env)
    train, dev = load_pairs(args.train), load_pairs(args.data)
    # words learned from training questions, applied to dev questions that are not in training
    known = {q.lower() for q in train.questions.values()}
    fresh = np.array(sorted(q for q, t in dev.questions.items() if t.lower() not in known and len(tokenize(t)) <= args.max_tokens), dtype=np.int64)
    train.questions.update({-1 - q: t for q, t in dev.questions.items()})  # dev questions join the corpus under ids of their own
    qids, texts = near_miss_texts(train, -1 - fresh, args.n, args.seed)
    originals = [train.questions[q] for q in qids.tolist()]
    print(f"# {len(texts):,} near misses of dev questions unseen in training, e.g. {originals[0]!r} -> {texts[0]!r}")

    fit = None
    if args.teacher:
        with np.load(args.teacher) as z:
            tq, tv = z["qids"], z["vectors"].astype(np.float32)
            sq, st, sv = z["swap_qids"], z["swap_texts"].astype(str), z["swap_vectors"].astype(np.float32)
        pick = np.random.default_rng(args.seed).choice(len(sq), min(args.teacher_sample, len(sq)), replace=False)
        graded = (tv[np.searchsorted(tq, sq[pick])] * sv[pick]).sum(1)
        fit = {"anchors": [train.questions[int(q)] for q in sq[pick]], "misses": st[pick].tolist(),
               "target": 1 - args.stretch * (1 - graded), "changed": graded < MINILM_TAU}
        print(f"# and {len(pick):,} of the {len(sq):,} near misses in {args.teacher}; MiniLM scores {fit['changed'].mean():.1%} of them below {MINILM_TAU}")

    encode, version = minilm()
    reference = (encode(originals) * encode(texts)).sum(1)
    changed = reference < CUT
    print(f"# reference: all-MiniLM-L6-v2 ({version}); it scores {changed.mean():.1%} of them below 0.7")
    rows = []
    header = f"{'model':<40} {'Spearman':>8} {'called dup':>10} {'... of MiniLM < 0.7':>19} " + " ".join(f"{a[:12]+'/'+b[:12]:>26}" for a, b in NAMED)
    print(header)
    for path in args.model or [None]:
        model = load_model(path)
        cos = (model.encode(originals) * model.encode(texts)).sum(1)
        named = [float(model.encode([a])[0] @ model.encode([b])[0]) for a, b in NAMED]
        row = {
            "model": str(model.path), "threshold": model.threshold,
            "spearman": float(np.corrcoef(ranks(cos), ranks(reference))[0, 1]),
            "called_duplicate": float((cos >= model.threshold).mean()),
            "called_duplicate_where_minilm_below_0.7": float((cos[changed] >= model.threshold).mean()),
            "named_pairs": {f"{a} / {b}": c for (a, b), c in zip(NAMED, named)},
        }
        if fit is not None:
            own = (model.encode(fit["anchors"]) * model.encode(fit["misses"])).sum(1)
            row["teacher_near_misses"] = {"rmse_to_target": float(np.sqrt(((own - fit["target"]) ** 2).mean())),
                                          "called_duplicate_where_minilm_below_0.757": float((own[fit["changed"]] >= model.threshold).mean())}
        rows.append(row)
        print(f"{Path(row['model']).name:<40} {row['spearman']:>8.3f} {row['called_duplicate']:>10.1%} "
              f"{row['called_duplicate_where_minilm_below_0.7']:>19.1%} "
              + " ".join(f"{c:>20.3f} {'dup' if c >= model.threshold else 'not':>5}" for c in named)
              + (f"  | teacher file: RMSE {row['teacher_near_misses']['rmse_to_target']:.3f}, of MiniLM < 0.757 called dup "
                 f"{row['teacher_near_misses']['called_duplicate_where_minilm_below_0.757']:.1%}" if fit is not None else ""))
    named = [float(encode([a])[0] @ encode([b])[0]) for a, b in NAMED]
    print(f"{'all-MiniLM-L6-v2 (reference)':<40} {1.0:>8.3f} {'':>10} {'':>19} " + " ".join(f"{c:>20.3f} {'':>5}" for c in named))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**env, "command": " ".join(sys.argv), "near_misses": len(texts),
                                          "minilm_below_0.7": float(changed.mean()), "models": rows,
                                          "minilm_named_pairs": named,
                                          **({"teacher": args.teacher, "teacher_sample": len(fit["anchors"]), "stretch": args.stretch} if fit else {})}, indent=2))


if __name__ == "__main__":
    main()
