"""Measure the question index: build time, warm query latency (new path against the old one, side
by side), recall@10 against exact float32 search, and a cold `dupfinder query` process. Prints the
machine, versions and command, writes a JSON to benchmarks/results/; never asserts.

Targets: index 100,000 questions in <= 30 s on 2 cores (encoding included); warm query
(encode + search + metadata) p50 <= 2 ms and p99 <= 10 ms on 100,000 with exact search; HNSW on
500,000, p50 <= 1 ms at recall@10 >= 0.98 of exact; a cold `dupfinder query` in <= 2 s.

Paths compared per query (k=10, one query at a time, dev questions):
  new: numpy encode (no torch) + the store's search (`LocalStore.search`, what `Engine.query` runs;
       flat: PQ scan + exact rescoring of the candidates, from ScanConfig.min_count questions up;
       hnsw: the graph at the recorded efSearch)
       + the store's records (`LocalStore.get`)
  old: torch encode + exact scan of every stored vector (`knn.exact_search`; flat) + the store's records

Recall@10 is against exact search (`knn.exact_search`) over the store's own float32 vectors, reported two ways:
by id, and counting ties as hits (a returned question scoring at least the exact 10th score is a
hit: questions with the same tokens have the same vector, and then which of them is "the" 10th is
arbitrary; FAISS's own exact search scores below 1 by id for that reason).

Examples:
  python benchmarks/bench_index.py --n 100000 --threads 2
  python benchmarks/bench_index.py --n 0 --kind hnsw --out indexes/bench-hnsw --build-only   # 0: all unique train questions
  python benchmarks/bench_index.py --n 0 --kind hnsw --out indexes/bench-hnsw                # reuses it, measures
  python benchmarks/bench_index.py --n 5000 --queries 100 --cold-runs 2 --results /tmp/bi    # a quick check
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, print_environment, set_threads  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "quora"


def write_corpus(train: str, n: int, path: Path) -> int:
    """The first n unique train questions (all when n is 0) as id,question."""
    from dupfinder.io import load_questions

    qs = load_questions(train)
    ids, texts = qs.ids[: n or None], qs.texts[: n or None]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "question"])
        w.writerows(zip(ids, texts))
    return len(texts)


def stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {f"p{p}_ms": round(float(np.percentile(ms, p)), 3) for p in (50, 90, 99)}


def fmt(s: dict) -> str:
    return f"p50 {s['p50_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms"


def time_queries(texts, encode, search, rows) -> dict:
    """Per query: encode, search, rows and their total, one question at a time, after 20 warm-up queries."""
    for t in texts[:20]:
        rows(search(encode([t]))[1][0].tolist())
    parts = {"encode": [], "search": [], "rows": [], "total": []}
    for t in texts:
        s0 = time.perf_counter()
        v = encode([t])
        s1 = time.perf_counter()
        _, ids = search(v)
        s2 = time.perf_counter()
        rows(ids[0].tolist())
        s3 = time.perf_counter()
        for name, dt in (("encode", s1 - s0), ("search", s2 - s1), ("rows", s3 - s2), ("total", s3 - s0)):
            parts[name].append(dt)
    return {name: stats(v) for name, v in parts.items()}


def recall(got_scores, got_ids, want_scores, want_ids) -> dict:
    by_id = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got_ids.tolist(), want_ids.tolist())])
    tied = np.mean(np.minimum((got_scores >= want_scores[:, 9:10] - 1e-5).sum(1), 10) / 10)
    return {"recall_at_10": round(float(by_id), 4), "recall_at_10_ties_as_hits": round(float(tied), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="questions to index (0: all unique train questions)")
    p.add_argument("--kind", choices=["flat", "hnsw"], default="flat")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--threads", type=int, default=2, help="torch and FAISS threads for building")
    # the settings of earlier runs (see their JSON): the store now creates every HNSW index with HnswConfig's
    for option in ("--hnsw-m", "--ef-construction", "--ef-search"):
        p.add_argument(option, type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--queries", type=int, default=1000, help="warm queries timed (dev questions)")
    p.add_argument("--out", default=None, help="keep the index here (reused if it exists); default a temp dir")
    p.add_argument("--build-only", action="store_true", help="build (or find) the index at --out and stop")
    p.add_argument("--train", default=str(DATA / "train.csv.gz"))
    p.add_argument("--dev", default=str(DATA / "dev.csv"))
    p.add_argument("--cold-runs", type=int, default=7)
    p.add_argument("--results", default=str(Path(__file__).parent / "results"), help="folder for the JSON")
    args = p.parse_args()
    if args.hnsw_m is not None or args.ef_construction is not None or args.ef_search is not None:
        p.error("--hnsw-m, --ef-construction and --ef-search are gone: dupfinder's store creates an HNSW index with "
                "HnswConfig's settings (dupfinder/store/vectors.py; change them there to measure others), and the "
                "measurement sweeps efSearch from 32 to 256")

    set_threads(args.threads)
    env = environment()
    print_environment(env)
    result: dict = {**env, "args": vars(args)}

    tmp = Path(tempfile.mkdtemp(prefix="bench_index_"))
    out = Path(args.out) if args.out else tmp / "index"
    try:
        if not (out / "manifest.json").exists():
            corpus = tmp / "corpus.csv"
            n = write_corpus(args.train, args.n, corpus)
            build = build_index(out, corpus, args)
            build["of"] = n
            result["build"] = build
            print(
                f"index {args.kind}: {build['questions']:,} of {n:,} questions in {build['seconds']:.1f} s ({build['questions_per_s']:,} q/s): "
                f"read {build['read_s']:.1f} s, encode {build['encode_s']:.1f} s, "
                f"dedup + FAISS (+ PQ scan) + SQLite {build['faiss_sqlite_s']:.1f} s",
                flush=True,
            )
        else:
            print(f"reusing {out}", flush=True)
        if not args.build_only:
            measure_index(out, args, texts_from(args.dev, args.queries), result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(args.results) / f"index-{args.kind}-n{args.n}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


class TimedEncoder:
    """The engine's encoder, timing its `encode` calls (`seconds`)."""

    def __init__(self, encoder):
        self._encoder, self.seconds = encoder, 0.0

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode(self, texts, **kw):
        start = time.perf_counter()
        try:
            return self._encoder.encode(texts, **kw)
        finally:
            self.seconds += time.perf_counter() - start


def build_index(out: Path, corpus: Path, args) -> dict:
    """`Engine.add` of the corpus file's questions, timed in parts: read, encode, and the rest
    (planning, FAISS, SQLite)."""
    from dupfinder.engine import Engine, read_questions

    with Engine.for_writing(out, args.model, args.kind) as engine:
        engine.encoder = TimedEncoder(engine.encoder)
        t0 = time.perf_counter()
        questions = read_questions([str(corpus)])
        t_read = time.perf_counter()
        report = engine.add(questions)
        total = time.perf_counter() - t0
        t_encode = engine.encoder.seconds
    return {
        "questions": report.added, "seconds": round(total, 2), "questions_per_s": round(report.added / total),
        "read_s": round(t_read - t0, 2), "encode_s": round(t_encode, 2),
        "faiss_sqlite_s": round(total - (t_read - t0) - t_encode, 2),
    }


def texts_from(dev: str, n: int) -> list[str]:
    from dupfinder.io import load_questions

    return [t for t in load_questions(dev).texts if t][:n]


def measure_index(out: Path, args, texts: list[str], result: dict) -> None:
    """Warm latency of the new and old query paths with recall, then the cold process, into `result`."""
    import faiss

    from dupfinder.engine import Engine
    from dupfinder.knn import exact_search
    from dupfinder.model.encoder import load_model, torch_installed

    engine = Engine.open(out, args.model)  # the store, and the model that built it (auto: numpy for one question)
    store, encoder = engine.store, engine.encoder
    torch_encoder = load_model(encoder.path, backend="torch") if torch_installed() else None
    manifest = store.manifest
    scan = manifest.get("scan") if store.kind == "flat" else None
    scan_built = scan is not None and store.count >= scan["min_count"]  # the store builds the scan from min_count questions
    result["index"] = {
        "count": store.count, "kind": store.kind, "dimension": store.dim, "size_mb": round(store.info()["size_bytes"] / 1e6, 1),
        **({"hnsw": manifest["hnsw"]} if store.kind == "hnsw" else {"scan": scan}),
        "scan_built": scan_built,
    }
    print(f"index: {store.count:,} questions, {store.kind}, d={store.dim}, {result['index']['size_mb']:,.0f} MB on disk"
          + (f", HNSW {manifest['hnsw']}" if store.kind == "hnsw" else f", scan {scan} "
             f"({'built' if scan_built else 'not built: exact search'})"), flush=True)
    print(f"warm queries: {len(texts)} dev questions one at a time, k=10 (encode + search + metadata)")
    if torch_encoder is None:
        print("  torch is not installed: the old path (torch encode) is left out")

    qv = (torch_encoder or encoder).encode(texts)  # (q, d)
    all_ids, vectors = store.all_vectors()  # (n,), (n, d): every stored question
    want_scores, want_rows = exact_search(vectors, qv, 10)
    want_ids = all_ids[want_rows]

    def exact(v):
        """The old flat path: every stored vector compared (as the old `search(..., exact=True)`)."""
        scores, rows = exact_search(vectors, v, 10)
        return scores, np.where(rows >= 0, all_ids[rows], -1)

    paths = {}

    def measure(label, encode, search):
        paths[label] = time_queries(texts, encode, search, store.get)
        got = [search(v[None]) for v in qv]  # one query at a time, as timed
        got_scores, got_ids = np.vstack([g[0] for g in got]), np.vstack([g[1] for g in got])
        paths[label].update(recall(got_scores, got_ids, want_scores, want_ids))
        t = paths[label]
        print(f"  {label}: total {fmt(t['total'])}; recall@10 {t['recall_at_10']:.4f} "
              f"({t['recall_at_10_ties_as_hits']:.4f} counting ties)\n"
              f"    encode {fmt(t['encode'])}\n    search {fmt(t['search'])}\n    rows   {fmt(t['rows'])}", flush=True)

    # one query at a time: FAISS on one thread, as the store itself searches a few queries
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    if store.kind == "flat":
        measure(f"new: numpy encode + {'PQ scan + exact rescoring' if scan_built else 'exact scan (no PQ scan below min_count)'}",
                encoder.encode, lambda v: store.search(v, 10))
        if torch_encoder is not None:
            measure("old: torch encode + exact scan of every vector", torch_encoder.encode, exact)
    else:
        recorded = store.ef_search
        for ef in sorted({32, 48, 64, 96, 112, recorded, 128, 256}):
            store.ef_search = ef
            measure(f"numpy encode + HNSW efSearch {ef}{' (recorded)' if ef == recorded else ''}", encoder.encode,
                    lambda v: store.search(v, 10))
        store.ef_search = recorded
        if torch_encoder is not None:
            measure(f"old: torch encode + HNSW efSearch {recorded}", torch_encoder.encode, lambda v: store.search(v, 10))
    faiss.omp_set_num_threads(threads)
    result["warm"] = paths
    engine.close()

    exe = shutil.which("dupfinder") or str(Path(sys.executable).parent / "dupfinder")
    cmd = [exe, "query", "How old are you?", "--index", str(out)] + (["--model", args.model] if args.model else [])
    cold = []
    for _ in range(args.cold_runs):
        s = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        cold.append(time.perf_counter() - s)
        if r.returncode != 0:
            print(r.stderr)
            break
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from dupfinder.cli import cli\ntry: cli(sys.argv[1:])\nexcept SystemExit: pass\n"
         "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)", *cmd[1:]],
        capture_output=True, text=True,
    )
    imports = subprocess.run(
        [sys.executable, "-c", "import time; t=time.perf_counter()\ntry: import torch\nexcept ImportError: t=float('nan')\n"
         "a=time.perf_counter(); import faiss; b=time.perf_counter(); print(f'{a-t:.3f} {b-a:.3f}')"], capture_output=True, text=True,
    ).stdout.split()
    result["cold"] = {
        "command": " ".join(cmd), "runs_s": [round(c, 3) for c in cold], "median_s": round(statistics.median(cold), 3),
        "torch_imported": probe.stderr.strip().splitlines()[-1] == "torch imported",
        "import_torch_s": float(imports[0]), "import_faiss_s": float(imports[1]),
    }
    c = result["cold"]
    print(f"cold `dupfinder query` process (a new process each run; files in the page cache): median {c['median_s']:.2f} s "
          f"of {', '.join(f'{x:.2f}' for x in cold)} s; {probe.stderr.strip().splitlines()[-1]} "
          f"(import torch alone {c['import_torch_s']:.2f} s, faiss {c['import_faiss_s']:.2f} s)")


if __name__ == "__main__":
    main()
