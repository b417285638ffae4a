"""Batch dedup: cluster quality against gold duplicate clusters under each linkage (single, the
guard, complete), and end-to-end time and peak memory of `dupfinder dedup` on N questions.

Quality: the questions of dev.csv, and a sample of the training file drawn by whole gold clusters;
gold clusters are the connected components of the labeled duplicate pairs (qids). Pairwise
precision/recall/F1 count question pairs put in the same cluster. Quora labels only some pairs, so
gold clusters miss many true duplicates and pairwise precision is a lower bound; "labeled" metrics
use only the pairs that carry a label (precision: of the labeled pairs put together, the share
labeled duplicate; recall: of the labeled duplicates, the share put together).

Throughput: the first N unique questions of the training file are written to a CSV and
`dupfinder dedup` runs on it in a subprocess; wall time and its peak RSS (getrusage maxrss) are
reported. Never asserts.

Usage: python benchmarks/bench_dedup.py [--model DIR] [--threads 2] [--sample 100000] [--n 400000]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, print_environment, set_threads  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"


def pairwise_metrics(pred: np.ndarray, gold: np.ndarray) -> dict:
    """Pairwise precision/recall/F1 of a predicted clustering against a gold one (labels per item)."""

    def pairs(counts: np.ndarray) -> int:
        counts = counts.astype(np.int64)
        return int((counts * (counts - 1) // 2).sum())

    _, joint = np.unique(np.stack([pred, gold]), axis=1, return_counts=True)
    tp = pairs(joint)
    pred_pairs = pairs(np.unique(pred, return_counts=True)[1])
    gold_pairs = pairs(np.unique(gold, return_counts=True)[1])
    p = tp / pred_pairs if pred_pairs else 0.0
    r = tp / gold_pairs if gold_pairs else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "pred_pairs": pred_pairs, "gold_pairs": gold_pairs, "true_pairs": tp}


def labeled_metrics(pred_of: dict, qid1: np.ndarray, qid2: np.ndarray, label: np.ndarray) -> dict:
    together = np.fromiter((pred_of[a] == pred_of[b] for a, b in zip(qid1.tolist(), qid2.tolist())), bool, len(label))
    dup = label == 1
    tp = int((together & dup).sum())
    p = tp / together.sum() if together.sum() else 0.0
    r = tp / dup.sum() if dup.sum() else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "labeled_pairs": int(len(label))}


def quality(name: str, encoder, qids: list[int], texts: list[str], gold_of: dict, labeled, taus: list[float], k: int,
            exact_below: int) -> dict:
    """Encode once, search once at the lowest tau, then cluster by each linkage at each tau."""
    from dupfinder.dedup import DedupConfig, dedup_encoded, edges_from_knn, encode_distinct, knn_partitioned
    from dupfinder.knn import exact_search

    t0 = time.perf_counter()
    enc = encode_distinct(encoder, texts, np.ones(len(texts), bool))
    t_encode = time.perf_counter() - t0
    base = DedupConfig(threshold=min(taus), k=k, exact_below=exact_below)
    t0 = time.perf_counter()
    exact = len(enc.x) <= exact_below
    if exact:
        scores, ids = exact_search(enc.x, enc.x, k + 1, base.block_size)
    else:
        scores, ids = knn_partitioned(enc.x, k + 1, base)
    edges = edges_from_knn(scores, ids, base.threshold)
    t_search = time.perf_counter() - t0
    out = {"questions": len(texts), "distinct_texts": len(enc.x), "gold_clusters": len(set(gold_of[q] for q in qids)),
           "seconds_encode": round(t_encode, 2), "seconds_search": round(t_search, 2), "k": k,
           "search": "exact" if exact else "partitioned", "runs": []}
    if not exact:
        out["partitioned_edge_recall"] = edge_recall(enc.x, ids, taus, k)
    gold = np.array([gold_of[q] for q in qids])
    print(f"\n## {name}: {len(texts):,} questions ({out['distinct_texts']:,} distinct texts), "
          f"{out['gold_clusters']:,} gold clusters; encode {t_encode:.1f} s, search ({out['search']}) {t_search:.1f} s")
    if "partitioned_edge_recall" in out:
        print("   partitioned search finds " + ", ".join(f"{r:.4f} at tau {t}" for t, r in out["partitioned_edge_recall"].items())
              + f" of the exact top-{k} edges (2,000 sampled questions)")
    print(f"{'tau':>6} {'linkage':>8} | {'pair P':>7} {'pair R':>7} {'pair F1':>7} | {'lab P':>6} {'lab R':>6} {'lab F1':>6} |"
          f" {'clusters':>8} {'largest':>7} {'<tau':>6} {'refused':>7} {'s':>5}")
    for tau in taus:
        keep = edges[2] >= tau
        sub = tuple(e[keep] for e in edges)
        for linkage in ("single", "guard", "complete"):
            t0 = time.perf_counter()
            res = dedup_encoded(enc, DedupConfig(threshold=tau, linkage=linkage, k=k, exact_below=exact_below), edges=sub)
            seconds = time.perf_counter() - t0
            pred = res.cluster
            pm = pairwise_metrics(pred, gold)
            lm = labeled_metrics(dict(zip(qids, pred.tolist())), *labeled)
            sizes = np.bincount(pred)
            below = float((res.score < tau - 1e-5).mean())  # members farther than tau from their canonical
            run = {"threshold": tau, "linkage": linkage, "pairwise": pm, "labeled": lm, "clusters": int(len(sizes)),
                   "clusters_with_duplicates": int((sizes > 1).sum()), "largest_cluster": int(sizes.max()),
                   "share_below_tau_with_canonical": below,
                   "merges_refused": res.stats["merges_refused"], "seconds_cluster": round(seconds, 2)}
            out["runs"].append(run)
            print(f"{tau:>6.3f} {linkage:>8} | {pm['precision']:>7.4f} {pm['recall']:>7.4f} {pm['f1']:>7.4f} |"
                  f" {lm['precision']:>6.4f} {lm['recall']:>6.4f} {lm['f1']:>6.4f} | {run['clusters']:>8,} "
                  f"{run['largest_cluster']:>7,} {below:>6.3f} {run['merges_refused']:>7,} {seconds:>5.1f}")
    return out


def edge_recall(x: np.ndarray, ids: np.ndarray, taus: list[float], k: int, n_queries: int = 2000, seed: int = 0) -> dict:
    """Share of the exact top-k edges at or above each tau that the approximate top-k `ids` also hold, on sampled queries."""
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(len(x), size=min(n_queries, len(x)), replace=False))
    exact_ids, exact_scores = [], []
    for start in range(0, len(q), 256):
        sims = x[q[start : start + 256]] @ x.T  # (b, n)
        top = np.argpartition(-sims, k + 1, axis=1)[:, : k + 1]
        exact_ids.append(top)
        exact_scores.append(np.take_along_axis(sims, top, 1))
    exact_ids, exact_scores = np.concatenate(exact_ids), np.concatenate(exact_scores)
    found = np.array([[e in set(row) for e in erow] for erow, row in zip(exact_ids.tolist(), ids[q].tolist())])
    out = {}
    for tau in taus:
        wanted = (exact_scores >= tau) & (exact_ids != q[:, None])
        out[str(tau)] = float(found[wanted].mean()) if wanted.any() else float("nan")
    return out


def sample_by_cluster(gold_of: dict, n: int, seed: int) -> list[int]:
    """About n qids, taking whole gold clusters in a random order (so the sample's gold is complete)."""
    by_cluster: dict[int, list[int]] = {}
    for q, c in gold_of.items():
        by_cluster.setdefault(c, []).append(q)
    order = np.random.default_rng(seed).permutation(sorted(by_cluster))
    picked: list[int] = []
    for c in order.tolist():
        if len(picked) >= n:
            break
        picked.extend(by_cluster[c])
    return sorted(picked)


def gold_for(pairs) -> tuple[dict, tuple]:
    from dupfinder.io import duplicate_clusters

    return duplicate_clusters(pairs), (pairs.qid1, pairs.qid2, pairs.label)


def throughput(args, train_pairs) -> dict:
    """`dupfinder dedup` on the first N unique training questions, in a subprocess: wall time and peak RSS."""
    texts = list(train_pairs.questions.items())[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "questions.csv", Path(tmp) / "deduped.csv"
        with open(src, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "question"])
            w.writerows(texts)
        cmd = [sys.executable, "-m", "dupfinder", "dedup", str(src), "-o", str(out), "--threads", str(args.threads), "--json"]
        if args.model:
            cmd += ["--model", args.model]
        print(f"\n## throughput: {len(texts):,} questions\n$ {' '.join(cmd)}")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
        result = {"questions": len(texts), "seconds": round(wall, 2), "questions_per_second": round(len(texts) / wall, 1),
                  "peak_rss_mb": round(peak_mb, 1), "exit_code": proc.returncode, "command": " ".join(cmd)}
        if proc.returncode == 0:
            result["summary"] = json.loads(proc.stdout)
            s = result["summary"]
            print(f"{wall:.1f} s wall ({len(texts) / wall:,.0f} q/s), peak RSS {peak_mb:,.0f} MB; stages "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in s["seconds"].items())
                  + f"; {s['search']}; {s['clusters']:,} clusters, {s['duplicate_rows']:,} duplicate rows, largest {s['largest_cluster']:,}")
        else:
            result["stderr"] = proc.stderr[-2000:]
            print(f"failed with exit code {proc.returncode}:\n{proc.stderr[-2000:]}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    ap.add_argument("--dev", default=str(DATA / "dev.csv"))
    ap.add_argument("--train", default=str(DATA / "train.csv.gz"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=16, help="neighbours per question")
    ap.add_argument("--taus", default=None, help="comma-separated thresholds (default: the model's tau and tau +- 0.05)")
    ap.add_argument("--sample", type=int, default=100_000, help="training questions for the quality run (0: skip)")
    ap.add_argument("--n", type=int, default=400_000, help="questions for the throughput run (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exact-below", type=int, default=50_000, help="exact search up to this many questions, partitioned above (quality runs)")
    ap.add_argument("--out", default=None, help="JSON results (default: benchmarks/results/dedup-<date>.json)")
    args = ap.parse_args()

    set_threads(args.threads)
    from dupfinder import load_model
    from dupfinder.io import load_pairs

    env = environment()
    print_environment(env)
    encoder = load_model(args.model)
    tau = encoder.threshold
    taus = [float(t) for t in args.taus.split(",")] if args.taus else [round(tau - 0.05, 4), tau, round(tau + 0.05, 4)]
    print(f"# model: {encoder.path} ({encoder.fingerprint}), dimension {encoder.dim}, tau {tau:.4f}")
    results = {**env, "model": str(encoder.path), "model_fingerprint": encoder.fingerprint, "model_threshold": tau,
               "taus": taus, "quality": {}}

    dev = load_pairs(args.dev)
    gold_of, labeled = gold_for(dev)
    qids = sorted(dev.questions)
    results["quality"]["dev"] = quality("dev questions", encoder, qids, [dev.questions[q] for q in qids], gold_of, labeled, taus, args.k, args.exact_below)

    train = load_pairs(args.train) if args.sample or args.n else None
    if args.sample:
        gold_of, _ = gold_for(train)
        qids = sample_by_cluster(gold_of, args.sample, args.seed)
        inside = set(qids)
        both = np.fromiter((a in inside and b in inside for a, b in zip(train.qid1.tolist(), train.qid2.tolist())), bool, len(train))
        labeled = (train.qid1[both], train.qid2[both], train.label[both])
        name = f"train sample ({args.sample:,} questions by whole gold clusters, seed {args.seed})"
        results["quality"]["train_sample"] = quality(name, encoder, qids, [train.questions[q] for q in qids], gold_of, labeled, taus, args.k, args.exact_below)
    if args.n:
        del gold_of
        results["throughput"] = throughput(args, train)

    out = Path(args.out or Path(__file__).parent / "results" / f"dedup-{env['date'][:19].replace(':', '')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\n# wrote {out}")


if __name__ == "__main__":
    main()
