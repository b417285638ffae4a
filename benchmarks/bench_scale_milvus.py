"""Scale benchmark, FAISS folder against Milvus, side by side in one run: every unique question of
the training file into the local store (FAISS HNSW + SQLite) and into a Milvus collection (HNSW,
IP) on a Milvus Lite server started here; index throughput (encoding once, cached as .npy in --work,
reported apart from each store's insert), query latency p50/p99 at k=10 (search + rows, what
`Engine.query` asks of a store), recall@10 against exact search, memory; then the dev retrieval
benchmark (benchmarks/run.py's corpus: dev questions + 100,000 distractors) through each store,
nDCG@10 side by side. Prints the machine, versions and command; writes benchmarks/results/; never
asserts.

Milvus Lite is a local stand-in for a Milvus cluster's API (a pure-Python server): its latency is
reported as what it is. dupfinder's own cost per Milvus query is the time outside pymilvus's calls.

Examples:
  python benchmarks/bench_scale_milvus.py --work /tmp/scale                # everything (about 40 min on 2 cores)
  python benchmarks/bench_scale_milvus.py --work /tmp/scale --n 20000 --no-ndcg
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "quora"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))  # milvus_server: the Milvus Lite server the tests start too


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="folder for the cached vectors, the local store and Milvus Lite's data")
    ap.add_argument("--n", type=int, default=0, help="first N unique training questions (0: all)")
    ap.add_argument("--stores", default="milvus,faiss", help="comma-separated: faiss, milvus")
    ap.add_argument("--milvus", default=None, help="milvus://HOST:PORT of a running server (default: start Milvus Lite in --work)")
    ap.add_argument("--queries", type=int, default=1000, help="dev questions timed one at a time (k=10)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--index-wait", type=float, default=3600, help="seconds to wait for Milvus Lite's background index build")
    ap.add_argument("--no-ndcg", action="store_true", help="leave out the dev retrieval benchmark")
    ap.add_argument("--ndcg-only", action="store_true", help="only the dev retrieval benchmark")
    ap.add_argument("--distractors", type=int, default=100_000, help="retrieval benchmark distractors, as benchmarks/run.py")
    ap.add_argument("--model", default=None)
    ap.add_argument("--train", default=str(DATA / "train.csv.gz"))
    ap.add_argument("--dev", default=str(DATA / "dev.csv"))
    ap.add_argument("--results", default=str(HERE / "results"))
    return ap.parse_args(argv)


# ---------------------------------------------------------------- measuring


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def rss_mb(pid: int | str = "self") -> dict:
    out = {}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return out


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


def wait_idle(pid: int, limit_s: float, idle_cpu_s: float = 0.3, window_s: float = 5.0) -> float:
    """Seconds until the process uses under idle_cpu_s of CPU in window_s (Milvus Lite builds segment
    indexes and compacts in a background thread after a flush)."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        before = cpu_s(pid)
        time.sleep(window_s)
        if cpu_s(pid) - before < idle_cpu_s:
            return time.perf_counter() - start - window_s
    return float("nan")


class PymilvusClock:
    """Wall time spent inside the Milvus client's search and query calls (the rest is dupfinder's)."""

    def __init__(self, client):
        self.seconds = 0.0
        for name in ("search", "query"):
            real = getattr(client, name)
            setattr(client, name, self._timed(real))

    def _timed(self, fn):
        def call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        return call


def time_queries(store, vectors: np.ndarray, k: int = 10, clock: PymilvusClock | None = None) -> tuple[dict, np.ndarray]:
    """One query at a time, as Engine.query: search, then the rows of the hits. Returns latency and ids (q, k)."""
    for v in vectors[:20]:  # warm-up
        store.get(store.search(v[None], k)[1].ravel().tolist())
    total, outside, ids = [], [], np.full((len(vectors), k), -1, np.int64)
    for row, v in enumerate(vectors):
        inside = clock.seconds if clock else 0.0
        t = time.perf_counter()
        _, found = store.search(v[None], k)
        store.get(found.ravel().tolist())
        elapsed = time.perf_counter() - t
        total.append(elapsed)
        if clock:
            outside.append(elapsed - (clock.seconds - inside))
        ids[row] = found[0]
    out = {"p50_ms": pct(total, 50), "p90_ms": pct(total, 90), "p99_ms": pct(total, 99), "mean_ms": statistics.fmean(total) * 1000}
    if clock:
        out["dupfinder_overhead"] = {"p50_ms": pct(outside, 50), "p99_ms": pct(outside, 99), "mean_ms": statistics.fmean(outside) * 1000}
    return out, ids


def recall(store, ids: np.ndarray, exact_rows: np.ndarray, exact_scores: np.ndarray, row_of: dict, scores_of) -> dict:
    """recall@k of store ids (q, k) against exact rows, by question and counting ties as hits."""
    records = store.get(np.unique(ids[ids >= 0]).tolist())
    rows = np.array([[row_of[records[i].user_id] if i in records else -1 for i in r] for r in ids.tolist()])
    k = exact_rows.shape[1]
    by_id = np.mean([len(set(a) & set(b)) / k for a, b in zip(rows.tolist(), exact_rows.tolist())])
    got = scores_of(rows)  # (q, k) true cosine of what was returned, -inf for nothing
    ties = np.mean((got >= exact_scores[:, -1:] - 1e-6).sum(1) / k)
    return {"recall_at_10": round(float(by_id), 4), "recall_at_10_ties_as_hits": round(float(ties), 4)}


# ---------------------------------------------------------------- the run


def main(argv=None) -> dict:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: spinning OpenMP waiters collapse beside a busy process
    from common import environment, print_environment, set_threads

    from dupfinder.atomic import write_atomic
    from dupfinder.engine import load_encoder, model_record
    from dupfinder.io import load_pairs, load_questions
    from dupfinder.knn import exact_search
    from dupfinder.store.base import Question

    set_threads(args.threads)
    env = environment()
    env["threads"], env["load_average_at_start"] = args.threads, os.getloadavg()
    try:
        import milvus_lite
        import pymilvus

        env["versions"].update(pymilvus=pymilvus.__version__, milvus_lite=milvus_lite.__version__)
    except ImportError:
        pass
    print_environment(env)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(args.model)
    record = model_record(encoder)
    results = {**env, "args": vars(args), "model": {"path": str(encoder.path), "fingerprint": encoder.fingerprint}, "stores": {}}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"scale-milvus-n{args.n or 'all'}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"

    def save() -> None:
        write_atomic(path, json.dumps(results, indent=2, default=float).encode())

    if args.ndcg_only:
        server = None if args.milvus or "milvus" not in stores else start_milvus(work)
        results["retrieval"] = retrieval(args, encoder, record, stores, work, server)
        save()
        if server is not None:
            server.remove()
        print(json.dumps(results["retrieval"], indent=2, default=float))
        log(f"saved {path}")
        return results

    # ------------------------------------------------ questions and their vectors, once
    log(f"reading {args.train}")
    qs = load_questions(args.train)
    ids, texts = [str(i) for i in qs.ids[: args.n or None]], qs.texts[: args.n or None]
    cache = work / f"vectors-{encoder.fingerprint}-n{len(texts)}.npy"
    if cache.exists():
        vectors = np.load(cache)
        encode_s = json.loads(cache.with_suffix(".json").read_text())["encode_s"]
        log(f"{len(texts):,} vectors from {cache} (encoded in {encode_s:.1f} s)")
    else:
        log(f"encoding {len(texts):,} questions")
        t = time.perf_counter()
        vectors = encoder.encode(texts)  # (n, d) unit rows
        encode_s = time.perf_counter() - t
        np.save(cache, vectors)
        cache.with_suffix(".json").write_text(json.dumps({"encode_s": encode_s, "n": len(texts)}))
    questions = [Question(i, t, "train.csv.gz") for i, t in zip(ids, texts)]
    results["questions"] = {"read": len(texts), "encode_s": round(encode_s, 2), "encode_qps": round(len(texts) / encode_s)}

    # what a store holds: one question per normalized text (plan_add skips the rest)
    from dupfinder.store.base import AddReport, plan_add

    fresh = plan_add(questions, {}, set(), AddReport()).fresh
    kept = np.array([i for i, _, _ in fresh])
    row_of = {questions[i].user_id: r for r, i in enumerate(kept.tolist())}
    stored_vectors = np.ascontiguousarray(vectors[kept])  # (m, d)
    dev = load_pairs(args.dev)
    dev_texts = list(dict.fromkeys(dev.questions[q] for q in sorted(dev.questions)))
    rng = np.random.default_rng(0)
    query_texts = [dev_texts[i] for i in rng.choice(len(dev_texts), size=min(args.queries, len(dev_texts)), replace=False)]
    query_vectors = encoder.encode(query_texts)  # (q, d)
    log(f"exact top-10 of {len(query_texts):,} dev questions over {len(stored_vectors):,} vectors")
    exact_scores, exact_rows = exact_search(stored_vectors, query_vectors, 10)

    def scores_of(rows: np.ndarray) -> np.ndarray:
        got = np.einsum("qkd,qd->qk", stored_vectors[np.maximum(rows, 0)], query_vectors)
        return np.where(rows >= 0, got, -np.inf)

    server = None
    for name in stores:
        log(f"--- {name}")
        rss_before = rss_mb()["VmRSS"]
        if name == "faiss":
            from dupfinder.store.local import LocalStore

            folder = work / "faiss-hnsw"
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            store = LocalStore(folder, create={"kind": "hnsw"})
        else:
            from dupfinder.store.milvus import MilvusStore

            if args.milvus:
                base = args.milvus.rstrip("/")
            else:
                server = start_milvus(work)
                base = f"milvus://127.0.0.1:{server.port}"
            store = MilvusStore(f"{base}/scale_{len(texts)}", create={"kind": "hnsw"})
            if store.exists:
                store.client.drop_collection(store.address.collection)
                store = MilvusStore(f"{base}/scale_{len(texts)}", create={"kind": "hnsw"})
        store.set_model(record, encoder.dim)
        server_cpu = cpu_s(server.pid()) if server and name == "milvus" else None
        t = time.perf_counter()
        report = store.add(questions, vectors)
        insert_s = time.perf_counter() - t
        r: dict = {"stored": report.count, "insert_s": round(insert_s, 2), "insert_qps": round(len(texts) / insert_s),
                   "index_qps_with_encoding": round(len(texts) / (insert_s + encode_s))}
        log(f"{name}: {report.count:,} stored in {insert_s:.1f} s ({r['insert_qps']:,} q/s; with encoding "
            f"{r['index_qps_with_encoding']:,} q/s)")
        if name == "milvus":
            r["server_cpu_s_during_insert"] = round(cpu_s(server.pid()) - server_cpu, 1) if server else None
            probe = query_vectors[:20]
            t = time.perf_counter()
            for v in probe:
                store.search(v[None], 10)
            r["search_ms_right_after_index"] = round((time.perf_counter() - t) / len(probe) * 1000, 1)
            log(f"milvus: a search right after the add (flushed, segment indexes building): {r['search_ms_right_after_index']} ms")
            if server:
                r["background_index_build_s"] = round(wait_idle(server.pid(), args.index_wait), 1)
                log(f"milvus: background index build and compaction done after {r['background_index_build_s']} s more")
            clock = PymilvusClock(store.client)
        else:
            clock = None
        latency, found = time_queries(store, query_vectors, 10, clock)
        r["query_k10"] = latency
        r.update(recall(store, found, exact_rows, exact_scores, row_of, scores_of))
        if name == "faiss":
            r["memory"] = {"process_rss_growth_mb": round(rss_mb()["VmRSS"] - rss_before, 1), "folder_mb": folder_mb(folder)}
        else:
            r["memory"] = {"server": rss_mb(server.pid()) if server else None,
                           "data_dir_mb": folder_mb(work / "milvus") if server else None}
        log(f"{name}: query p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms; recall@10 {r['recall_at_10']} "
            f"({r['recall_at_10_ties_as_hits']} ties as hits); memory {r['memory']}"
            + (f"; dupfinder's own per query p50 {latency['dupfinder_overhead']['p50_ms']:.3f} ms" if clock else ""))
        results["stores"][name] = r
        save()
        store.close()

    # ------------------------------------------------ the dev retrieval benchmark through each store
    if not args.no_ndcg:
        results["retrieval"] = retrieval(args, encoder, record, stores, work, server)
        save()
    if server is not None:
        server.remove()
    print(json.dumps({k: results[k] for k in ("questions", "stores", *(("retrieval",) if "retrieval" in results else ()))}, indent=2, default=float))
    log(f"saved {path}")
    return results


def start_milvus(work: Path):
    """A Milvus Lite server on a free loopback port, its data in work/milvus (emptied first)."""
    import shutil

    from milvus_server import MilvusLiteServer

    shutil.rmtree(work / "milvus", ignore_errors=True)
    return MilvusLiteServer(work / "milvus").start()


def retrieval(args, encoder, record, stores, work: Path, server) -> dict:
    """nDCG@10 etc. of benchmarks/run.py's retrieval benchmark, ranked by each store's search."""
    from dupfinder.evaluation.retrieval import build_benchmark, evaluate_top, evaluate_vectors
    from dupfinder.io import load_pairs
    from dupfinder.store.base import Question

    log("retrieval benchmark: building the corpus")
    dev, train = load_pairs(args.dev), load_pairs(args.train)
    bench = build_benchmark(dev, train, args.distractors, seed=0)
    del train
    corpus_vectors = encoder.encode(bench.corpus)  # (c, d)
    out = {"benchmark": bench.summary(), "exact_numpy": evaluate_vectors(bench, corpus_vectors)}
    questions = [Question(str(row), text, "corpus") for row, text in enumerate(bench.corpus)]
    for name in stores:
        if name == "faiss":
            import shutil

            from dupfinder.store.local import LocalStore

            shutil.rmtree(work / "faiss-ndcg", ignore_errors=True)
            store = LocalStore(work / "faiss-ndcg", create={"kind": "hnsw"})
        else:
            from dupfinder.store.milvus import MilvusStore

            base = args.milvus.rstrip("/") if args.milvus else f"milvus://127.0.0.1:{server.port}"
            store = MilvusStore(f"{base}/ndcg", create={"kind": "hnsw"})
            if store.exists:
                store.client.drop_collection(store.address.collection)
                store = MilvusStore(f"{base}/ndcg", create={"kind": "hnsw"})
        store.set_model(record, encoder.dim)
        store.add(questions, corpus_vectors)
        if name == "milvus" and server is not None:
            wait_idle(server.pid(), args.index_wait)
        _, top_ids = store.search(corpus_vectors[bench.queries], 11)
        records = store.get(np.unique(top_ids[top_ids >= 0]).tolist())
        top = np.array([[int(records[i].user_id) if i in records else -1 for i in row] for row in top_ids.tolist()])
        out[name] = evaluate_top(bench, top)
        log(f"retrieval through {name}: nDCG@10 {out[name]['ndcg@10']:.4f} (exact numpy {out['exact_numpy']['ndcg@10']:.4f})")
        store.close()
    if "faiss" in out and "milvus" in out:
        out["ndcg@10_milvus_minus_faiss"] = out["milvus"]["ndcg@10"] - out["faiss"]["ndcg@10"]
    return out


if __name__ == "__main__":
    main()
