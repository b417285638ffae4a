"""Dev pairs by word overlap: the two named pairs (the age pair a duplicate, from/going not) as measured sets instead of single cases.

"How old are you?" / "What is your age?" is a duplicate that shares no word; "Where are you from?" /
"Where are you going?" is a non-duplicate that shares most of its words. Quora's labels lean the
other way (in the training split, 1.3% of pairs sharing under 10% of their words are duplicates,
55% of those sharing 60-70%), so a model trained on them can learn overlap as a shortcut. This splits
dev pairs by the Jaccard overlap of the two questions' word sets and reports, per slice and per
model at its own tau: how many duplicates it calls duplicates (recall) and how many non-duplicates
it calls duplicates (false-duplicate rate), and the slice's ROC-AUC, which needs no threshold. The
named pairs' own scores come last.

With --minilm, all-MiniLM-L6-v2 joins at the threshold that maximizes its balanced accuracy on
these same dev pairs (it has no stored tau): an upper bound for it, marked as such.

Usage: python research/overlap_slices.py [--model DIR ...] [--minilm] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py, baselines.py
from common import environment, print_environment, set_threads  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"
EDGES = (0.0, 0.2, 0.4, 0.6, 1.01)  # slices of word overlap: [0, 0.2), [0.2, 0.4), [0.4, 0.6), [0.6, 1]
NAMED = [("How old are you?", "What is your age?", 1), ("Where are you from?", "Where are you going?", 0)]


def word_overlap(a: list[str], b: list[str]) -> np.ndarray:
    """Jaccard overlap of the word sets (tokens with a letter or digit) of each pair a[i], b[i]."""
    from dupfinder.text import tokenize

    def words(t: str) -> set[str]:
        return {w for w in tokenize(t) if any(ch.isalnum() for ch in w)}

    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(a, b)):
        wx, wy = words(x), words(y)
        out[i] = len(wx & wy) / len(wx | wy) if wx | wy else 0.0
    return out


def slice_rows(scores: np.ndarray, labels: np.ndarray, overlap: np.ndarray, threshold: float) -> list[dict]:
    """Per overlap slice: recall and false-duplicate rate at `threshold`, and ROC-AUC (no threshold)."""
    from dupfinder.evaluation.metrics import roc_auc

    called = scores >= threshold
    rows = []
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        s = (overlap >= lo) & (overlap < hi)
        dup, neg = s & (labels == 1), s & (labels == 0)
        rows.append({
            "overlap": f"{lo:.1f}-{min(hi, 1.0):.1f}", "duplicates": int(dup.sum()), "non_duplicates": int(neg.sum()),
            "recall": float(called[dup].mean()) if dup.any() else None,
            "false_duplicate_rate": float(called[neg].mean()) if neg.any() else None,
            "roc_auc": roc_auc(scores[s], labels[s]) if dup.any() and neg.any() else None,
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="model directory; repeat to compare (default: the shipped model)")
    ap.add_argument("--data", default=str(DATA / "dev.csv"), help="labeled pairs file")
    ap.add_argument("--minilm", action="store_true", help="add all-MiniLM-L6-v2 at its best dev threshold (needs the 'bench' extra)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "overlap_slices.json"))
    args = ap.parse_args()

    set_threads(args.threads)
    from dupfinder import load_model
    from dupfinder.evaluation.calibrate import calibrate
    from dupfinder.io import load_pairs

    env = environment()
    print_environment(env)
    pairs = load_pairs(args.data)
    a, b, labels = pairs.texts(1), pairs.texts(2), pairs.label
    overlap = word_overlap(a, b)
    print(f"# {len(pairs):,} pairs of {args.data}; named pairs' overlap: "
          + ", ".join(f"{x} / {y} {word_overlap([x], [y])[0]:.2f}" for x, y, _ in NAMED))

    systems = []  # (name, encode, scores of the dev pairs, threshold, note): each system encodes the pairs once
    for path in args.model or [None]:
        model = load_model(path)
        systems.append((Path(model.path).name, model.encode, (model.encode(a) * model.encode(b)).sum(1), model.threshold, "stored tau"))
    if args.minilm:
        from baselines import MiniLM

        m = MiniLM()
        scores = (m.encode(a) * m.encode(b)).sum(1)
        systems.append((m.name, m.encode, scores, calibrate(scores, labels)["threshold"], "best dev threshold (upper bound)"))

    results = []
    for name, encode, scores, threshold, note in systems:
        named = [float(encode([x])[0] @ encode([y])[0]) for x, y, _ in NAMED]
        results.append({"system": name, "threshold": float(threshold), "threshold_from": note,
                        "slices": slice_rows(scores, labels, overlap, threshold),
                        "named_pairs": {f"{x} / {y}": c for (x, y, _), c in zip(NAMED, named)}})

    print(f"\n{'system':<28} {'tau':>6} " + " ".join(f"{'overlap ' + r['overlap']:>23}" for r in results[0]["slices"])
          + f" {'age pair':>9} {'from/going':>10}")
    print(f"{'':<28} {'':>6} " + " ".join(f"{'recall / false dup / AUC':>23}" for _ in results[0]["slices"]))
    fmt = lambda x: "  -  " if x is None else f"{x:.3f}"
    for r in results:
        cells = " ".join(f"{fmt(s['recall']):>7} / {fmt(s['false_duplicate_rate'])} / {fmt(s['roc_auc'])}" for s in r["slices"])
        named = " ".join(f"{c:>9.3f}" if i == 0 else f"{c:>10.3f}" for i, c in enumerate(r["named_pairs"].values()))
        print(f"{r['system'][:28]:<28} {r['threshold']:>6.3f} {cells} {named}")
    print("\n" + "  ".join(f"overlap {s['overlap']}: {s['duplicates']:,} duplicates, {s['non_duplicates']:,} non-duplicates"
                           for s in results[0]["slices"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**env, "data": args.data, "systems": results}, indent=2))


if __name__ == "__main__":
    main()
