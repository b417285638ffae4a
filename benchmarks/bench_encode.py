"""Encoding throughput: questions per second of batch encoding on N CPU threads, median of repeats.

With several --model, their repeats take turns, so a noisy machine slows them alike.

Usage: python benchmarks/bench_encode.py [--model DIR ...] [--threads 2] [--n 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, print_environment, set_threads, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="model directory; repeat to compare (default: the shipped model)")
    ap.add_argument("--data", default=str(Path(__file__).parents[1].parent / "shared/data/quora/dev.csv"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=20000, help="questions encoded per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-sizes", default="128,512,2048")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "encode.json"))
    args = ap.parse_args()

    set_threads(args.threads)
    from dupfinder import load_model
    from dupfinder.io import load_pairs

    env = environment()
    print_environment(env)
    pairs = load_pairs(args.data)
    texts = list(pairs.questions.values())
    texts = (texts * (args.n // len(texts) + 1))[: args.n]
    encoders = [load_model(m) for m in args.model or [None]]
    for i, encoder in enumerate(encoders):
        print(f"# model {i}: {encoder.path} ({encoder.fingerprint}), dimension {encoder.dim}, vocabulary {len(encoder.vocab):,}")
        encoder.encode(texts[:2000])  # warm-up
    print(f"# {len(texts):,} dev questions per repeat")
    rows = []
    print(f"{'model':>5} {'batch':>6} {'median q/s':>11} {'min q/s':>9} {'max q/s':>9}")
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        rates = [[] for _ in encoders]
        for _ in range(args.repeats):
            for encoder, r in zip(encoders, rates):
                seconds, _ = timed(encoder.encode, texts, batch_size=bs)
                r.append(len(texts) / seconds)
        for i, (encoder, r) in enumerate(zip(encoders, rates)):
            rows.append({"model": str(encoder.path), "fingerprint": encoder.fingerprint, "batch_size": bs,
                         "median_qps": statistics.median(r), "min_qps": min(r), "max_qps": max(r)})
            print(f"{i:>5} {bs:>6} {statistics.median(r):>11,.0f} {min(r):>9,.0f} {max(r):>9,.0f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**env, "command": sys.argv, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
