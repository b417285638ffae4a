"""Every unique question of the training file (about 537,000) in each store, side by side in one run:
index throughput (encoding and the store's part apart), warm query latency one question at a time
(k=10, encode + search + records, as `Engine.query`), recall@10 against exact search at a few
ef_search values, the dev retrieval benchmark's nDCG@10 through each store, disk and memory.
Prints the machine, versions and command; writes a JSON to benchmarks/results/; never asserts.

Stores (`--stores`, comma-separated): `local` (FAISS HNSW + SQLite folder, `LocalStore`), `postgres`
(pgvector HNSW, `PostgresStore`; a throwaway server from the pgserver package in --work unless
--pg-uri names one), and `milvus` (HNSW, `MilvusStore`; a Milvus Lite server in --work unless
--milvus-uri names one). The corpus is encoded once and
cached in --work as .npy, so a second run measures only the stores.

Targets: recall@10 >= 0.98 at the default ef_search; bulk indexing >= 5,000 questions/s;
query p50 <= 5 ms on 2 cores; retrieval nDCG@10 through PostgreSQL within 0.005 of FAISS.

Examples:
  python benchmarks/bench_scale.py --work /tmp/bench-scale                     # local and postgres, all questions
  python benchmarks/bench_scale.py --work /tmp/bench-scale --n 50000 --queries 300
  python benchmarks/bench_scale.py --work /tmp/bench-scale --stores postgres --pg-uri 'postgresql://me@localhost/bench'
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

# OpenMP threads that spin while waiting collapse beside other busy processes (as the CLI sets it)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # pg_server, milvus_server: throwaway servers
from common import environment, print_environment, set_threads  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "quora"
K = 10


# ---------------------------------------------------------------- the stores compared


class StoreBench:
    """One kind of store in the benchmark: how to make a new one, set its ef_search, and measure it.
    A new store kind subclasses this and joins STORES."""

    name = "?"

    def __init__(self, args, work: Path):
        self.args, self.work = args, work

    def start(self) -> dict:
        """Start what the store needs (a server); returns facts to record (versions, settings)."""
        return {}

    def new_store(self, label: str, model: dict, dim: int):
        """A new, empty store named `label` (the corpus, the retrieval benchmark)."""
        raise NotImplementedError

    def ef_values(self, store) -> list[int]:
        return []

    def set_ef(self, store, ef: int) -> None:
        store.ef_search = ef

    def footprint(self, store) -> dict:
        """disk_bytes and memory_bytes of the store, with how each was measured."""
        return {}

    def stop(self) -> None:
        pass


class LocalBench(StoreBench):
    """The folder store (FAISS HNSW in memory, SQLite), at its default HnswConfig."""

    name = "local"

    def start(self) -> dict:
        from dataclasses import asdict

        from dupfinder.store.local import HnswConfig

        return {"hnsw": asdict(HnswConfig())}

    def new_store(self, label: str, model: dict, dim: int):
        from dupfinder.store.local import LocalStore

        folder = self.work / f"local-{label}"
        shutil.rmtree(folder, ignore_errors=True)
        store = LocalStore(folder, create={"kind": "hnsw"})
        store.set_model(model, dim)
        return store

    def ef_values(self, store) -> list[int]:
        return sorted({32, 64, 128, 256, int(store.ef_search or 96)})

    def footprint(self, store) -> dict:
        folder = Path(store.location)
        disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        # the FAISS graph and vectors live in the process that opened the store: its RSS after
        # opening it and running a few queries, in a fresh process
        code = ("import sys, resource, numpy as np; from dupfinder.store.local import LocalStore\n"
                "s = LocalStore(sys.argv[1]); s.search(np.ones((8, s.dim), np.float32) / s.dim ** 0.5, 10)\n"
                "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])")
        base = ("import numpy, faiss, dupfinder.store.local\n"
                "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])")
        rss = int(subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True).stdout.split()[-1])
        rss0 = int(subprocess.run([sys.executable, "-c", base], capture_output=True, text=True).stdout.split()[-1])
        return {"disk_bytes": disk, "disk_how": "files in the folder",
                "memory_bytes": (rss - rss0) * 1024, "memory_how": "RSS of a process that opened it and searched, less the same imports"}


class PostgresBench(StoreBench):
    """PostgreSQL + pgvector: --pg-uri, else a throwaway server in --work from the pgserver
    package's binaries, or those of $DUPFINDER_PG_BIN (fsync on, shared_buffers --pg-shared-buffers,
    the rest at PostgreSQL's defaults)."""

    name = "postgres"

    def start(self) -> dict:
        self.server = None
        if self.args.pg_uri:
            self.base = self.args.pg_uri
        else:
            from pg_server import PgServer

            root = self.work / "pgdata"
            shutil.rmtree(root, ignore_errors=True)
            self.server = PgServer(root, settings={"shared_buffers": self.args.pg_shared_buffers, "fsync": "on"})
            self.server.start()
            self.server.create_database("bench")
            self.base = self.server.socket_uri("bench")
        from dataclasses import asdict

        from dupfinder.store.postgres import HnswSettings

        with self._admin() as conn:
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in
                        ("server_version", "shared_buffers", "max_parallel_maintenance_workers", "maintenance_work_mem", "work_mem")}
            vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return {"settings": settings, "pgvector": vector[0] if vector else None, "hnsw": asdict(HnswSettings()),
                "server": f"started by the benchmark from {self.server.bin}" if self.server else "given by --pg-uri"}

    def _admin(self):
        import psycopg

        from dupfinder.store.postgres import parse_location

        return psycopg.connect(parse_location(self.base).conninfo, autocommit=True)

    def uri(self, label: str) -> str:
        return self.base + ("&" if "?" in self.base else "?") + f"table=bench_{label}"

    def new_store(self, label: str, model: dict, dim: int):
        from dupfinder.store.postgres import PostgresStore

        with self._admin() as conn:
            conn.execute(f"DROP TABLE IF EXISTS bench_{label}")
            if conn.execute("SELECT to_regclass('dupfinder_indexes')").fetchone()[0]:
                conn.execute("DELETE FROM dupfinder_indexes WHERE name = %s", (f"bench_{label}",))
                conn.execute("DELETE FROM dupfinder_migrations WHERE index_name = %s", (f"bench_{label}",))
        store = PostgresStore(self.uri(label), create={"kind": "hnsw"}, hnsw=self.hnsw)
        store.set_model(model, dim)
        return store

    hnsw = None  # HnswSettings of the graphs it creates (None: the store's defaults)

    def ef_values(self, store) -> list[int]:
        return sorted({64, 100, 128, 144, 160, 200, 256, int(store.ef_search)})

    def footprint(self, store) -> dict:
        import psutil

        with self._admin() as conn:
            table, index = conn.execute("SELECT pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass)",
                                        (store.table, f"{store.table}_embedding_hnsw")).fetchone()
        out = {"disk_bytes": int(table), "disk_how": "pg_total_relation_size (heap, TOAST, the HNSW graph, the other indexes)",
               "hnsw_index_bytes": int(index)}
        if self.server is not None:
            procs = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and str(self.server.data) in " ".join(p.info["cmdline"])]
            procs += [c for p in procs for c in p.children(recursive=True)]
            pss = sum(p.memory_full_info().pss for p in {p.pid: p for p in procs}.values())
            out.update(memory_bytes=int(pss), memory_how="PSS of the server's processes: shared_buffers shared out among them, where touched")
        return out

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()


class MilvusBench(StoreBench):
    """Milvus: --milvus-uri (milvus://HOST:PORT), else a Milvus Lite server (tests/milvus_server.py)
    in --work. Milvus Lite is a pure-Python stand-in for a cluster's API: its latency is what it is.
    After a bulk add it builds the segments' HNSW indexes in a background thread; a store's first
    search waits for that to finish (the server's CPU idle for 5 s), so queries and the retrieval
    benchmark measure indexed segments, and the wait is recorded as index_build_s."""

    name = "milvus"

    def start(self) -> dict:
        from dataclasses import asdict

        from dupfinder.store.milvus import CONSISTENCY, HnswParams

        self.server, self.index_build_s = None, {}
        if self.args.milvus_uri:
            self.base = self.args.milvus_uri.rstrip("/")
        else:
            from milvus_server import MilvusLiteServer

            shutil.rmtree(self.work / "milvus", ignore_errors=True)
            self.server = MilvusLiteServer(self.work / "milvus").start()
            self.base = f"milvus://127.0.0.1:{self.server.port}"
        import pymilvus

        lite = None
        if self.server is not None:
            import milvus_lite

            lite = milvus_lite.__version__
        return {"hnsw": asdict(HnswParams()), "consistency": CONSISTENCY, "pymilvus": pymilvus.__version__,
                "server": f"Milvus Lite {lite}, started by the benchmark" if self.server else "given by --milvus-uri",
                "index_build_s": self.index_build_s}

    def new_store(self, label: str, model: dict, dim: int):
        from dupfinder.store.milvus import MilvusStore

        uri = f"{self.base}/bench_{label}"
        store = MilvusStore(uri, create={"kind": "hnsw"})
        if store.exists:
            store.client.drop_collection(store.address.collection)
            store.close()
            store = MilvusStore(uri, create={"kind": "hnsw"})
        store.set_model(model, dim)
        if self.server is not None:
            search = store.search

            def first_search(*args, **kwargs):
                self.index_build_s[label] = round(self._wait_idle(), 1)
                print(f"  milvus {label}: background index build done {self.index_build_s[label]} s after the add", flush=True)
                store.search = search
                return search(*args, **kwargs)

            store.search = first_search
        return store

    def _wait_idle(self, limit_s: float = 3600, window_s: float = 5.0) -> float:
        def cpu() -> float:
            fields = open(f"/proc/{self.server.pid()}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < limit_s:
            before = cpu()
            time.sleep(window_s)
            if cpu() - before < 0.3:
                break
        return time.perf_counter() - t0 - window_s

    def ef_values(self, store) -> list[int]:
        return sorted({32, 64, 128, 256, int(store.ef_search or 96)})

    def footprint(self, store) -> dict:
        if self.server is None:
            return {}
        disk = sum(p.stat().st_size for p in (self.work / "milvus").rglob("*") if p.is_file())
        rss = int(open(f"/proc/{self.server.pid()}/status").read().split("VmRSS:")[1].split()[0]) * 1024
        return {"disk_bytes": disk, "disk_how": "Milvus Lite's data folder (every collection of the run so far)",
                "memory_bytes": rss, "memory_how": "RSS of the Milvus Lite server process (Python, pyarrow, faiss included)"}

    def stop(self) -> None:
        if self.server is not None:
            self.server.remove()


# the stores a run can compare: `--stores local,postgres,milvus`
STORES: dict[str, type[StoreBench]] = {"local": LocalBench, "postgres": PostgresBench, "milvus": MilvusBench}


# ---------------------------------------------------------------- corpus, once


def corpus(args, work: Path, encoder) -> dict:
    """The questions as every store keeps them (unique qids, then unique normalized texts, in file
    order) and their vectors: encoded once, cached in --work."""
    from dupfinder.engine import read_questions
    from dupfinder.store.base import text_hash

    cache = work / f"corpus-{encoder.fingerprint}-n{args.n}"
    if (cache.with_suffix(".npy")).exists() and (cache.with_suffix(".json")).exists():
        meta = json.loads(cache.with_suffix(".json").read_text())
        meta["vectors"] = np.load(cache.with_suffix(".npy"))
        meta["cached"] = True
        return meta
    t0 = time.perf_counter()
    seen, questions = set(), []
    for q in read_questions([args.train]):
        h = text_hash(q.text)
        if q.text.strip() and h not in seen:
            seen.add(h)
            questions.append(q)
    questions = questions[: args.n or None]
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vectors = encoder.encode([q.text for q in questions])  # (n, d)
    encode_s = time.perf_counter() - t0
    meta = {"ids": [q.user_id for q in questions], "texts": [q.text for q in questions], "read_s": round(read_s, 2),
            "encode_s": round(encode_s, 2), "encode_qps": round(len(questions) / encode_s), "cached": False}
    np.save(cache.with_suffix(".npy"), vectors)
    cache.with_suffix(".json").write_text(json.dumps(meta))
    meta["vectors"] = vectors
    return meta


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Corpus rows of the exact top k by inner product (q, k)."""
    from dupfinder.knn import exact_search

    return exact_search(vectors, queries, k)[1]


# ---------------------------------------------------------------- measuring one store


def pct(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {f"p{p}_ms": round(float(np.percentile(ms, p)), 3) for p in (50, 90, 99)}


def build(bench: StoreBench, label: str, model: dict, questions, vectors, batch: int) -> tuple[object, dict]:
    """A new store holding `questions`, added in batches of `batch` (0: one batch), timed."""
    store = bench.new_store(label, model, vectors.shape[1])
    t0 = time.perf_counter()
    step = batch or len(questions)
    for start in range(0, len(questions), step):
        report = store.add(questions[start : start + step], vectors[start : start + step])
    seconds = time.perf_counter() - t0
    parts = getattr(store, "last_add", None)
    graph = store.info().get("hnsw") if hasattr(store, "info") else None  # as created: a PostgreSQL graph's precision
    return store, {"questions": report.count, "store_s": round(seconds, 2), "store_qps": round(len(questions) / seconds),
                   **({"last_add": parts} if parts else {}), **({"graph": graph} if graph else {})}


def rows_of(store, ids: np.ndarray, row_of: dict[str, int], cache: dict[int, int]) -> np.ndarray:
    """Corpus rows of store ids (q, k), -1 where none."""
    missing = [i for i in np.unique(ids[ids >= 0]).tolist() if i not in cache]
    for start in range(0, len(missing), 10_000):
        for i, r in store.get(missing[start : start + 10_000]).items():
            cache[i] = row_of[r.user_id]
    return np.vectorize(lambda i: cache.get(int(i), -1), otypes=[np.int64])(ids) if ids.size else ids


def recall_at(got: np.ndarray, want: np.ndarray, k: int = K) -> float:
    return float(np.mean([len(set(g[:k]) & set(w[:k])) / k for g, w in zip(got.tolist(), want.tolist())]))


def measure_queries(bench: StoreBench, store, encoder, texts: list[str], qvectors: np.ndarray, want_rows: np.ndarray,
                    row_of: dict[str, int], cache: dict[int, int], warm: list[str] = ()) -> dict:
    """At each ef_search: one question at a time (encode + search + records) after 20 warm-up
    queries, then recall@10 of the same queries against exact search. First `warm` (other
    questions) are searched at the highest ef_search, so that the index is in memory, as a serving
    store's is."""
    out = {}
    default = getattr(store, "ef_search", None)
    if warm:
        t0 = time.perf_counter()
        values = bench.ef_values(store)
        if values:
            bench.set_ef(store, max(values))
        for t in warm:
            store.get(store.search(encoder.encode([t]), K)[1][0].tolist())
        print(f"  {bench.name}: warmed by {len(warm):,} other questions in {time.perf_counter() - t0:.1f} s", flush=True)
    for ef in bench.ef_values(store) or [None]:
        if ef is not None:
            bench.set_ef(store, ef)
        for t in texts[:20]:
            store.get(store.search(encoder.encode([t]), K)[1][0].tolist())
        parts = {"encode": [], "search": [], "records": [], "total": []}
        got = np.full((len(texts), K), -1, np.int64)
        for n, t in enumerate(texts):
            s0 = time.perf_counter()
            v = encoder.encode([t])  # (1, d)
            s1 = time.perf_counter()
            if callable(getattr(store, "search_records", None)):  # as Engine.query: hits and records at once
                _, ids, _ = store.search_records(v, K)
                s2 = s3 = time.perf_counter()
            else:
                _, ids = store.search(v, K)
                s2 = time.perf_counter()
                store.get(ids[0].tolist())
                s3 = time.perf_counter()
            got[n] = ids[0]
            for name, dt in (("encode", s1 - s0), ("search", s2 - s1), ("records", s3 - s2), ("total", s3 - s0)):
                parts[name].append(dt)
        rows = rows_of(store, got, row_of, cache)
        label = f"ef_search {ef}" + (" (default)" if ef == default else "") if ef is not None else "exact"
        out[label] = {"ef_search": ef, "default": ef == default, **{name: pct(v) for name, v in parts.items()},
                      "recall_at_10": round(recall_at(rows, want_rows), 4)}
        r = out[label]
        print(f"  {bench.name} {label}: total p50 {r['total']['p50_ms']:.2f} ms, p99 {r['total']['p99_ms']:.2f} ms "
              f"(search p50 {r['search']['p50_ms']:.2f} ms); recall@10 {r['recall_at_10']:.4f}", flush=True)
    if default is not None:
        bench.set_ef(store, default)
    return out


def retrieval(bench: StoreBench, model: dict, encoder, rb, vectors: np.ndarray) -> dict:
    """The dev retrieval benchmark through the store: its corpus stored (user id = corpus row),
    each query searched for k+1 (it finds itself), scored by evaluate_top."""
    from dupfinder.evaluation.retrieval import evaluate_top
    from dupfinder.store.base import Question

    questions = [Question(str(i), t, "retrieval") for i, t in enumerate(rb.corpus)]
    store, timing = build(bench, "retrieval", model, questions, vectors, 0)
    row_of = {str(i): i for i in range(len(rb.corpus))}
    _, ids = store.search(vectors[rb.queries], K + 1)
    top = rows_of(store, ids, row_of, {})
    metrics = evaluate_top(rb, top, K)
    store.close()
    return {"stored": timing["questions"], "ndcg@10": metrics["ndcg@10"], "recall@10": metrics["recall@10"],
            "mrr@10": metrics["mrr@10"], "p@1": metrics["p@1"]}


# ---------------------------------------------------------------- main


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stores", default="local,postgres", help=f"comma-separated, of: {', '.join(STORES)}")
    p.add_argument("--work", default="/tmp/dupfinder-bench-scale", help="cache of the encoded corpus, the stores' files, the server")
    p.add_argument("--n", type=int, default=0, help="questions to index (0: every unique training question)")
    p.add_argument("--batch", type=int, default=0, help="add in batches of this many (0: one batch, as `dupfinder index FILE`)")
    p.add_argument("--queries", type=int, default=1000, help="dev questions timed one at a time, and for recall")
    p.add_argument("--warm", type=int, default=2000, help="other dev questions searched first, so that the index is in memory")
    p.add_argument("--distractors", type=int, default=100_000, help="of the retrieval benchmark (as benchmarks/run.py); -1 skips it")
    p.add_argument("--pg-uri", default=None, help="an existing PostgreSQL database (with pgvector) instead of a throwaway server")
    p.add_argument("--pg-shared-buffers", default="2GB", help="shared_buffers of the throwaway server")
    p.add_argument("--milvus-uri", default=None, help="milvus://HOST:PORT of a running Milvus instead of a Milvus Lite server")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train", default=str(DATA / "train.csv.gz"))
    p.add_argument("--dev", default=str(DATA / "dev.csv"))
    p.add_argument("--keep", action="store_true", help="keep the stores (and stop the server) instead of deleting them")
    p.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    names = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [s for s in names if s not in STORES]
    if unknown:
        p.error(f"unknown store {', '.join(unknown)}; this benchmark knows {', '.join(STORES)}")

    set_threads(args.threads)
    env = environment()
    env["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    print_environment(env)
    print(f"# load average at start: {env['load_average_at_start']} (other work on the machine slows every number)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {**env, "args": vars(args), "stores": {}}

    from dupfinder.engine import load_encoder, model_record
    from dupfinder.io import load_pairs, load_questions
    from dupfinder.store.base import Question

    encoder = load_encoder(args.model)
    model = model_record(encoder)
    print(f"# model {encoder.path} ({encoder.fingerprint}, d={encoder.dim})")
    c = corpus(args, work, encoder)
    vectors = c["vectors"]
    questions = [Question(i, t, Path(args.train).name) for i, t in zip(c["ids"], c["texts"])]
    row_of = {q.user_id: i for i, q in enumerate(questions)}
    result["corpus"] = {"questions": len(questions), "encode_s": c["encode_s"], "encode_qps": c["encode_qps"], "read_s": c["read_s"],
                        "encode_cached": c["cached"]}
    print(f"corpus: {len(questions):,} unique questions; encoded in {c['encode_s']:.1f} s ({c['encode_qps']:,} q/s)"
          + (" (cached by an earlier run)" if c["cached"] else ""), flush=True)

    dev = [t for t in load_questions(args.dev).texts if t.strip()]
    texts, warm = dev[: args.queries], dev[args.queries : args.queries + args.warm]
    qv = encoder.encode(texts)  # (q, d)
    want_rows = exact_top(vectors, qv, K)
    rb = rb_vectors = None
    if args.distractors >= 0:
        from dupfinder.evaluation.retrieval import build_benchmark, evaluate_vectors

        rb = build_benchmark(load_pairs(args.dev), load_pairs(args.train), args.distractors, seed=0)
        rb_vectors = encoder.encode(rb.corpus)
        exact = evaluate_vectors(rb, rb_vectors, K)
        result["retrieval_exact_vectors"] = {"corpus": len(rb.corpus), "queries": len(rb.queries), "ndcg@10": exact["ndcg@10"]}
        print(f"retrieval benchmark: {len(rb.queries):,} queries, corpus {len(rb.corpus):,}; exact search over its vectors "
              f"nDCG@10 {exact['ndcg@10']:.4f}", flush=True)

    for name in names:
        bench = STORES[name](args, work)
        r: dict = {"setup": bench.start()}
        result["stores"][name] = r
        try:
            print(f"{name}: {r['setup']}", flush=True)
            store, timing = build(bench, "corpus", model, questions, vectors, args.batch)
            timing["encode_s"] = c["encode_s"]
            total = timing["store_s"] + c["encode_s"]
            timing.update(total_s=round(total, 2), total_qps=round(len(questions) / total))
            r["build"] = timing
            print(f"{name} index: {timing['questions']:,} questions; store {timing['store_s']:.1f} s ({timing['store_qps']:,} q/s), "
                  f"with encoding {total:.1f} s ({timing['total_qps']:,} q/s)", flush=True)
            r["queries"] = measure_queries(bench, store, encoder, texts, qv, want_rows, row_of, {}, warm)
            r["footprint"] = bench.footprint(store)
            f = r["footprint"]
            print(f"{name} footprint: disk {f.get('disk_bytes', 0) / 1e6:,.0f} MB, memory {f.get('memory_bytes', 0) / 1e6:,.0f} MB", flush=True)
            store.close()
            if rb is not None:
                r["retrieval"] = retrieval(bench, model, encoder, rb, rb_vectors)
                print(f"{name} retrieval: nDCG@10 {r['retrieval']['ndcg@10']:.4f} ({r['retrieval']['stored']:,} stored)", flush=True)
        finally:
            if not args.keep:
                bench.stop()
    if rb is not None and "local" in result["stores"]:
        base = result["stores"]["local"].get("retrieval", {}).get("ndcg@10")
        for name, r in result["stores"].items():
            if base is not None and "retrieval" in r:
                r["retrieval"]["ndcg@10_minus_local"] = round(r["retrieval"]["ndcg@10"] - base, 4)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(args.results) / f"scale-{'-'.join(names)}-n{args.n}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
