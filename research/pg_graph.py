"""PostgreSQL store: what pgvector's HNSW graph settings buy. For each `M:EFC` given, the training
file's unique questions (bench_scale's cached corpus) are added in one batch to a new table (COPY,
then the graph built in parallel), then 2,000 other dev questions warm the server's buffers at a
high ef_search (as a serving database's are), then 1,000 dev questions are timed one at a time
(encode + search + records) at each ef_search, with recall@10 against exact search.

    DUPFINDER_PG_BIN=... python research/pg_graph.py --work /work/bench_scale --graphs 16:64,24:100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_scale as bs  # noqa: E402
from common import environment, print_environment, set_threads  # noqa: E402


class GraphBench(bs.PostgresBench):
    """bench_scale's PostgreSQL store, with the graph's settings given (`hnsw`) and --ef's values."""

    def ef_values(self, store) -> list[int]:
        return self.args.ef


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/work/bench_scale")
    p.add_argument("--graphs", default="16:64", help="comma-separated M:EF_CONSTRUCTION")
    p.add_argument("--precision", default="auto")
    p.add_argument("--ef", default="64,100,128,160,200", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--warm", type=int, default=2000, help="dev questions searched at ef_search 400 before timing")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--rows", type=int, default=0, help="the first this many questions only (0: all)")
    p.add_argument("--workers", type=int, default=None, help="max_parallel_maintenance_workers of the build (server default: 2)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "pg_graph.json"))
    args = p.parse_args()
    for name, value in (("n", 0), ("pg_uri", None), ("pg_shared_buffers", "2GB"), ("model", None),
                        ("train", str(bs.DATA / "train.csv.gz")), ("dev", str(bs.DATA / "dev.csv"))):
        setattr(args, name, value)
    set_threads(2)
    env = environment()
    env["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    print_environment(env)

    from dupfinder.engine import load_encoder, model_record
    from dupfinder.io import load_questions
    from dupfinder.store.base import Question
    from dupfinder.store.postgres import HnswSettings

    encoder = load_encoder(None)
    model = model_record(encoder)
    work = Path(args.work)
    c = bs.corpus(args, work, encoder)
    rows = args.rows or len(c["ids"])
    vectors = c["vectors"][:rows]
    questions = [Question(i, t, "train.csv.gz") for i, t in zip(c["ids"][:rows], c["texts"][:rows])]
    row_of = {q.user_id: i for i, q in enumerate(questions)}
    dev = [t for t in load_questions(args.dev).texts if t.strip()]
    texts, warm = dev[: args.queries], dev[args.queries : args.queries + args.warm]
    want = bs.exact_top(vectors, encoder.encode(texts), bs.K)
    record = {**env, "args": {k: v for k, v in vars(args).items()}, "graphs": {}}
    bench = None
    for graph in args.graphs.split(","):
        m, efc = (int(x) for x in graph.split(":"))
        settings = HnswSettings(m=m, ef_construction=efc, precision=args.precision)
        if bench is None:
            bench = GraphBench(args, work)
            record["setup"] = bench.start()
            if args.workers is not None:
                with bench._admin() as conn:
                    conn.execute(f"ALTER SYSTEM SET max_parallel_maintenance_workers = {int(args.workers)}")
                    conn.execute("SELECT pg_reload_conf()")
                record["setup"]["max_parallel_maintenance_workers"] = args.workers
        bench.hnsw = settings
        store, timing = bs.build(bench, "graph", model, questions, vectors, 0)
        print(f"m {m} ef_construction {efc}: {timing}", flush=True)
        t0 = time.perf_counter()
        bench.set_ef(store, 400)
        for t in warm:
            store.get(store.search(encoder.encode([t]), bs.K)[1][0].tolist())
        timing["warm_s"] = round(time.perf_counter() - t0, 1)
        queries = bs.measure_queries(bench, store, encoder, texts, encoder.encode(texts), want, row_of, {})
        record["graphs"][graph] = {"build": timing, "queries": queries, "footprint": bench.footprint(store)}
        store.close()
        Path(args.out).write_text(json.dumps(record, indent=1))
    bench.stop()
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
