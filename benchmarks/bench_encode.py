"""Encoding throughput: questions per second of batch encoding on N CPU threads, median of repeats.

Usage: python benchmarks/bench_encode.py [--model DIR] [--threads 2] [--n 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, print_environment, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    ap.add_argument("--data", default=str(Path(__file__).parents[1].parent / "shared/data/quora/dev.csv"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=20000, help="questions encoded per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-sizes", default="128,512,2048")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "encode.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from dupfinder import load_model
    from dupfinder.data import load_pairs

    env = environment()
    print_environment(env)
    pairs = load_pairs(args.data)
    texts = list(pairs.questions.values())
    texts = (texts * (args.n // len(texts) + 1))[: args.n]
    encoder = load_model(args.model)
    print(f"# model: {encoder.path} ({encoder.fingerprint}), dimension {encoder.dim}; {len(texts):,} dev questions per repeat")
    encoder.encode(texts[:2000])  # warm-up
    rows = []
    print(f"{'batch':>6} {'median q/s':>11} {'min q/s':>9} {'max q/s':>9}")
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        rates = []
        for _ in range(args.repeats):
            seconds, _ = timed(encoder.encode, texts, batch_size=bs)
            rates.append(len(texts) / seconds)
        rows.append({"batch_size": bs, "median_qps": statistics.median(rates), "min_qps": min(rates), "max_qps": max(rates)})
        print(f"{bs:>6} {statistics.median(rates):>11,.0f} {min(rates):>9,.0f} {max(rates):>9,.0f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**env, "model": str(encoder.path), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
