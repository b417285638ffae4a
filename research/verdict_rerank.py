"""Does re-ranking a query's hits by the verdict head help retrieval? The dev retrieval benchmark
(dev questions + 100,000 training distractors, seed 0, as benchmarks/run.py builds it): cosine
top-N, then the order by the head's probability, or by cosine + w x probability, against the plain
cosine order, by nDCG@10 (all, unseen and seen queries).

    python research/verdict_rerank.py --model MODEL_DIR [--work /tmp/verdict-work] [--top 30]

Vectors come from --work's cache where the question is there (research/verdict_head.py writes it),
else are encoded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dupfinder.engine import Engine, load_encoder
from dupfinder.evaluation.retrieval import build_benchmark, evaluate_top
from dupfinder.io import load_pairs
from dupfinder.knn import exact_search

DATA = Path(__file__).parents[1].parent / "shared/data/quora"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/verdict-work"))
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--weights", default="0,0.05,0.1,0.2,0.5,inf")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.time()
    dev, train = load_pairs(DATA / "dev.csv"), load_pairs(DATA / "train.csv.gz")
    bench = build_benchmark(dev, train, 100_000, seed=0)
    engine = Engine(load_encoder(args.model))
    cache = {}
    for name in ("train", "dev"):  # dev last: its text wins where a qid is in both
        qids = np.load(args.work / f"{name}_qids.npy")
        vec = np.load(args.work / f"{name}_vec.npy")
        cache.update(zip(qids.tolist(), vec))
    vectors = np.stack([cache[q] for q in bench.corpus_qids.tolist()]).astype(np.float32)  # (n, d)
    q = bench.queries
    scores, top = exact_search(vectors, vectors[q], args.top + 1)  # (Q, top+1)
    keep = top != q[:, None]
    n = args.top
    rows = np.array([t[k][:n] for t, k in zip(top, keep)])
    cos = np.array([s[k][:n] for s, k in zip(scores, keep)])
    qa = np.repeat(q, n)
    texts = bench.corpus
    p = engine.verdict.scores(vectors[qa], vectors[rows.ravel()], [texts[i] for i in qa.tolist()],
                              [texts[i] for i in rows.ravel().tolist()])[0].reshape(len(q), n)
    print(f"head scored {p.size:,} candidate pairs in {time.time() - t0:.0f} s")
    out = {}
    for w in args.weights.split(","):
        w = float(w)
        key = p if np.isinf(w) else cos + w * p
        order = np.argsort(-key, axis=1, kind="stable")
        ranked = np.take_along_axis(rows, order, 1)
        m = evaluate_top(bench, ranked, 10)
        out[str(w)] = m
        print(f"w {w:>5}: nDCG@10 {m['ndcg@10']:.4f} (unseen {m['unseen']['ndcg@10']:.4f}, seen {m['seen']['ndcg@10']:.4f}), "
              f"P@1 {m['p@1']:.4f}, MRR@10 {m['mrr@10']:.4f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
