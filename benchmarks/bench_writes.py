"""Online writes to the local store: one add and one remove at a time (each a durable SQLite
transaction, fsynced), at a given store size, beside a single-query search. Vectors are random unit
vectors (the store does not care where they come from), so no model or data file is needed.

Example: python benchmarks/bench_writes.py --n 100000 1000000 --work /tmp/bench-writes
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, print_environment  # noqa: E402

from dupfinder.store.base import Question  # noqa: E402
from dupfinder.store.local import LocalStore  # noqa: E402

MODEL = {"fingerprint": "bench", "path": "/bench", "default": False, "threshold": 0.5}


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def run(n: int, folder: Path, ops: int, dim: int = 256) -> dict:
    rng = np.random.default_rng(0)

    def unit(m: int) -> np.ndarray:
        x = rng.standard_normal((m, dim)).astype(np.float32)  # (m, d)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    shutil.rmtree(folder, ignore_errors=True)
    store = LocalStore(folder, create={"kind": "flat"})
    store.set_model(MODEL, dim)
    t0 = time.perf_counter()
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        store.add([Question(f"u{start + i}", f"question number {start + i}") for i in range(m)], unit(m))
    bulk = time.perf_counter() - t0
    adds, removes, searches = [], [], []
    for i in range(ops):
        v = unit(1)
        t = time.perf_counter()
        store.add([Question(f"new{i}", f"a new question {i}")], v)
        adds.append(time.perf_counter() - t)
    for i in range(ops // 2):
        t = time.perf_counter()
        store.remove([f"new{i}"])
        removes.append(time.perf_counter() - t)
    for _ in range(ops):
        q = unit(1)
        t = time.perf_counter()
        store.search(q, 10)
        searches.append(time.perf_counter() - t)
    count = store.count
    store.close()
    t = time.perf_counter()
    reopened = LocalStore(folder)
    open_s = time.perf_counter() - t
    assert reopened.count == count, "a reopened store must hold what was acknowledged"
    reopened.close()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"n": n, "bulk_add_s": round(bulk, 1), "one_add": percentiles(adds), "one_remove": percentiles(removes),
            "search_k10": percentiles(searches), "open_s": round(open_s, 2), "count": count, "disk_mb": round(size / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="store sizes")
    ap.add_argument("--ops", type=int, default=200, help="single adds (and half as many removes, and searches) per size")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-writes"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "writes.json")
    args = ap.parse_args()
    env = environment() | {"load_average_at_start": [round(x, 2) for x in __import__("os").getloadavg()]}
    print_environment(env)
    results = []
    for n in args.n:
        r = run(n, args.work / f"n{n}", args.ops)
        print(f"{n:>9,}: one add p50 {r['one_add']['p50_ms']} ms p99 {r['one_add']['p99_ms']} ms; one remove p50 "
              f"{r['one_remove']['p50_ms']} ms p99 {r['one_remove']['p99_ms']} ms; search p50 {r['search_k10']['p50_ms']} ms; "
              f"bulk {r['bulk_add_s']} s; open {r['open_s']} s; {r['disk_mb']} MB", flush=True)
        results.append(r)
        shutil.rmtree(args.work / f"n{n}", ignore_errors=True)
    args.out.write_text(json.dumps({"environment": env, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
