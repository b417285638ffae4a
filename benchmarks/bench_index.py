"""Measure the question index: build time, warm query latency, recall@10 against exact search, and
a cold `dupfinder query` process. Prints the machine, versions and command; never asserts.

Targets (issue 3): index 100,000 questions in <= 30 s on 2 cores (encoding included); warm query
(encode + search + metadata) p50 <= 2 ms and p99 <= 10 ms on 100,000 with exact search; HNSW on
500,000, p50 <= 1 ms at recall@10 >= 0.98 of exact; a cold `dupfinder query` in <= 2 s.

Examples:
  python benchmarks/bench_index.py --n 100000 --model /tmp/m1
  python benchmarks/bench_index.py --n 0 --kind hnsw --out indexes/bench-hnsw   # 0: every unique train question
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "quora"


def machine() -> str:
    import faiss
    import torch

    import dupfinder

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} at start\n"
        f"versions: python {platform.python_version()}, dupfinder {dupfinder.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), faiss {faiss.__version__}, numpy {np.__version__}\n"
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}"
    )


def write_corpus(train: str, n: int, path: Path) -> int:
    """The first n unique train questions (all when n is 0) as id,question."""
    from dupfinder.data import load_questions

    qs = load_questions(train)
    ids, texts = qs.ids[: n or None], qs.texts[: n or None]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "question"])
        w.writerows(zip(ids, texts))
    return len(texts)


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1e3
    return f"p50 {np.percentile(ms, 50):.2f} ms, p90 {np.percentile(ms, 90):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="questions to index (0: all unique train questions)")
    p.add_argument("--kind", choices=["flat", "hnsw"], default="flat")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--faiss-threads", type=int, default=None, help="OpenMP threads for FAISS (default: FAISS's)")
    p.add_argument("--queries", type=int, default=1000, help="warm queries timed (dev questions)")
    p.add_argument("--out", default=None, help="keep the index here (reused if it exists); default a temp dir")
    p.add_argument("--train", default=str(DATA / "train.csv.gz"))
    p.add_argument("--dev", default=str(DATA / "dev.csv"))
    p.add_argument("--cold-runs", type=int, default=3)
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.faiss_threads:
        import faiss

        faiss.omp_set_num_threads(args.faiss_threads)
    print(machine(), flush=True)

    from dupfinder.data import load_questions
    from dupfinder.index import QuestionIndex, add_questions, encoder_for_writing, questions_from_files
    from dupfinder.search import exact_search, query

    tmp = Path(tempfile.mkdtemp(prefix="bench_index_"))
    out = Path(args.out) if args.out else tmp / "index"
    try:
        if not (out / "manifest.json").exists():
            corpus = tmp / "corpus.csv"
            n = write_corpus(args.train, args.n, corpus)
            encoder = encoder_for_writing(out, args.model)
            t0 = time.perf_counter()
            questions = questions_from_files([str(corpus)])
            t_read = time.perf_counter()
            encode = encoder.encode
            timing = {}

            def timed_encode(texts, **kw):
                s = time.perf_counter()
                v = encode(texts, **kw)
                timing["encode"] = time.perf_counter() - s
                return v

            encoder.encode = timed_encode
            report = add_questions(out, encoder, questions, kind=args.kind)
            total = time.perf_counter() - t0
            encoder.encode = encode
            print(
                f"index {args.kind}: {report.added:,} of {n:,} questions in {total:.1f} s ({report.added / total:,.0f} q/s): "
                f"read {t_read - t0:.1f} s, encode {timing['encode']:.1f} s, "
                f"dedup + FAISS + SQLite + publish {total - (t_read - t0) - timing['encode']:.1f} s",
                flush=True,
            )
        else:
            print(f"reusing {out}", flush=True)

        from dupfinder.index import open_with_model

        index, encoder = open_with_model(out, args.model)
        print(f"index: {index.count:,} questions, {index.kind}, d={index.dim}, {index.size_bytes() / 1e6:,.0f} MB on disk")
        dev = load_questions(args.dev)
        texts = [t for t in dev.texts if t][: args.queries]

        for t in texts[:20]:  # warm-up
            query(index, encoder, [t], k=10)
        total_t, enc_t, search_t, rows_t = [], [], [], []
        for t in texts:
            s0 = time.perf_counter()
            v = encoder.encode([t])
            s1 = time.perf_counter()
            scores, ids = index.search(v, 10)
            s2 = time.perf_counter()
            index.rows(ids[0].tolist())
            s3 = time.perf_counter()
            total_t.append(s3 - s0)
            enc_t.append(s1 - s0)
            search_t.append(s2 - s1)
            rows_t.append(s3 - s2)
        print(f"warm query, k=10, {len(texts)} dev questions one at a time (encode + search + metadata): {percentiles(total_t)}")
        print(f"  encode {percentiles(enc_t)}\n  search {percentiles(search_t)}\n  rows   {percentiles(rows_t)}", flush=True)

        n_recall = min(1000, len(texts))
        qv = encoder.encode(texts[:n_recall])  # (q, d)
        all_ids, vectors = index.vectors()
        exact_scores, rows = exact_search(vectors, qv, 10)
        want = all_ids[rows]

        def recall_line(label: str) -> str:
            got_scores, got = index.search(qv, 10)
            recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got.tolist(), want.tolist())])
            # questions with the same tokens have the same vector: a tie at the 10th place is not a miss
            tied = np.mean(np.minimum((got_scores >= exact_scores[:, 9:10] - 1e-5).sum(1), 10) / 10)
            return f"{label}recall@10 against exact numpy search, {n_recall} queries: {recall:.4f} (ties counted as hits: {tied:.4f})"

        if index.kind == "hnsw":
            import faiss

            hnsw = faiss.downcast_index(index.faiss_index.index).hnsw
            recorded = hnsw.efSearch
            for ef in sorted({32, 64, recorded, 256}):
                hnsw.efSearch = ef
                lat = []
                for t in texts:
                    s = time.perf_counter()
                    query(index, encoder, [t], k=10)
                    lat.append(time.perf_counter() - s)
                print(recall_line(f"efSearch {ef}{' (recorded)' if ef == recorded else ''}: {percentiles(lat)}; "), flush=True)
            hnsw.efSearch = recorded
        else:
            print(recall_line(""), flush=True)
        index.close()

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
        print(f"cold `dupfinder query` process (a new process each run; files in the page cache): "
              f"{', '.join(f'{c:.2f}' for c in cold)} s")
        imports = subprocess.run(
            [sys.executable, "-c", "import time; t=time.perf_counter(); import torch; a=time.perf_counter(); import faiss; "
             "b=time.perf_counter(); print(f'import torch {a-t:.2f} s, faiss {b-a:.2f} s')"], capture_output=True, text=True,
        )
        print(f"  of which {imports.stdout.strip()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
