"""Lexical mix: does ranking by w x the model's cosine + (1 - w) x the TF-IDF cosine find more duplicates?

A measurement, not a dupfinder feature. Two retrieval benchmarks, built as `benchmarks/run.py` builds its own
(queries: the question1 of duplicate pairs; relevant: the rest of its duplicate cluster; corpus:
those questions plus 100,000 training questions as distractors):
- "val": the training file's validation split (the clusters the model never trained on, held out by
  the same seed as `dupfinder train`), so w can be chosen without looking at dev;
- "dev": the dev benchmark of `benchmarks/run.py`, reported at every w and at the w that did best on "val".
TF-IDF is the baseline of `benchmarks/run.py` (scikit-learn, the 'bench' extra), fitted on each corpus.

Usage: python research/lexical_mix.py [--model DIR ...] [--weights 1,0.9,0.8,0.7,0.6,0.5] [--threads 2]
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


def mixed_top(dense: np.ndarray, tfidf, queries: np.ndarray, w: float, n: int, block: int = 256) -> np.ndarray:
    """Corpus rows of the n best w x dense cosine + (1 - w) x TF-IDF cosine (a fitted `baselines.Tfidf`)
    per query row, best first."""
    from baselines import best_columns

    out = np.empty((len(queries), n), dtype=np.int64)
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        scores = w * (dense[rows] @ dense.T) + (1 - w) * (tfidf.matrix[rows] @ tfidf.matrix_t).toarray()
        out[start : start + block] = best_columns(scores, n)
    return out


def sweep(bench, encode, weights: list[float]) -> list[dict]:
    from baselines import Tfidf

    from dupfinder.evaluation.retrieval import evaluate_top

    dense = np.asarray(encode(bench.corpus), dtype=np.float32)
    tfidf = Tfidf()
    tfidf.fit(bench.corpus)
    rows = []
    for w in weights:
        result = evaluate_top(bench, mixed_top(dense, tfidf, bench.queries, w, 11))
        row = {"w": w, "ndcg@10": result["ndcg@10"], "p@1": result["p@1"], "recall@10": result["recall@10"]}
        for part in ("unseen", "seen"):
            if part in result:
                row[f"ndcg@10 {part}"] = result[part]["ndcg@10"]
        rows.append(row)
        print("  w {w:.2f}  nDCG@10 {ndcg@10:.4f}  P@1 {p@1:.4f}  Recall@10 {recall@10:.4f}".format(**row)
              + "".join(f"  {k} {row[k]:.4f}" for k in ("ndcg@10 unseen", "ndcg@10 seen") if k in row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="model directory; repeat to compare (default: the shipped model)")
    ap.add_argument("--train", default=str(DATA / "train.csv.gz"))
    ap.add_argument("--dev", default=str(DATA / "dev.csv"))
    ap.add_argument("--weights", default="1,0.9,0.8,0.7,0.6,0.5", help="values of w, comma-separated")
    ap.add_argument("--distractors", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0, help="the validation split's seed (the model's --seed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lexical_mix.json"))
    args = ap.parse_args()
    weights = [float(w) for w in args.weights.split(",")]

    set_threads(args.threads)
    from dupfinder import load_model
    from dupfinder.evaluation.retrieval import build_benchmark
    from dupfinder.io import load_pairs
    from dupfinder.train.loop import TrainConfig, prepare

    env = environment()
    print_environment(env)
    prepared = prepare(args.train, TrainConfig(seed=args.seed), log=lambda _: None)
    val_bench = build_benchmark(prepared.val, prepared.train, args.distractors, args.seed)
    dev_bench = build_benchmark(load_pairs(args.dev), load_pairs(args.train), args.distractors, args.seed)
    results = {"environment": env, "weights": weights, "benchmarks": {"val": val_bench.summary(), "dev": dev_bench.summary()}, "models": {}}
    for path in args.model or [None]:
        name = path or "shipped"
        encoder = load_model(path)
        print(f"{name}: validation-split benchmark ({len(val_bench.queries):,} queries, never trained on)", flush=True)
        val_rows = sweep(val_bench, encoder.encode, weights)
        best = max(val_rows, key=lambda r: r["ndcg@10"])["w"]
        print(f"{name}: dev benchmark ({len(dev_bench.queries):,} queries); w = {best} did best on validation", flush=True)
        dev_rows = sweep(dev_bench, encoder.encode, weights)
        results["models"][name] = {"val": val_rows, "dev": dev_rows, "w_chosen_on_val": best}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
