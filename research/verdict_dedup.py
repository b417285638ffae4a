"""Which head threshold should dedup use? Dedup's candidates are nearest neighbours, mostly on one
topic, unlike the balanced labeled pairs the pair threshold is chosen on. This clusters the
questions of the encoder's validation split of the training file (clusters neither the encoder nor
the head trained on; never dev) at several head thresholds and reports pairwise P/R/F1 against
their gold clusters, then the same on dev's questions at each threshold for the record.

    python research/verdict_dedup.py [--model DIR] [--thresholds 0.165,0.3,0.5,0.7,0.85,0.95]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from bench_dedup import pairwise_metrics  # noqa: E402

from dupfinder.dedup import DedupConfig, cluster_edges, encode_distinct, neighbour_edges  # noqa: E402
from dupfinder.engine import Engine, load_encoder  # noqa: E402
from dupfinder.io import duplicate_clusters, load_pairs  # noqa: E402
from dupfinder.train.head import encoder_split  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"


def sweep(engine: Engine, texts: list[str], gold: np.ndarray, thresholds: list[float], label: str) -> dict:
    head = engine.verdict.head
    t0 = time.time()
    enc = encode_distinct(engine.encoder, texts, np.ones(len(texts), bool))
    config = DedupConfig(threshold=head.cosine_floor)
    a, b, s = neighbour_edges(enc.x, head.cosine_floor, config)
    qt = head.featurizer.questions(enc.texts)
    p = head.score(enc.x[a], enc.x[b], [qt[i] for i in a.tolist()], [qt[i] for i in b.tolist()])

    def judge(members, canonical):
        return head.score(enc.x[members], enc.x[[canonical] * len(members)], [qt[i] for i in members.tolist()],
                          [qt[canonical]] * len(members))

    print(f"\n## {label}: {len(texts):,} questions, {len(a):,} candidate edges, {time.time() - t0:.0f} s")
    out = {}
    cos = s
    for name, scores, thresholds_ in (("cosine", cos, [engine.encoder.threshold]), ("head", p, thresholds)):
        for t in thresholds_:
            c = cluster_edges(enc.x, a, b, scores.astype(np.float32), t, True, enc.weight, enc.first_row,
                              judge if name == "head" else None)
            pred = c.canonical[enc.group]
            m = pairwise_metrics(pred, gold)
            out[f"{name}@{t}"] = m
            print(f"{name:<6} {t:.3f}: P {m['precision']:.4f} R {m['recall']:.4f} F1 {m['f1']:.4f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--thresholds", default="0.165,0.3,0.5,0.7,0.85,0.95")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    thresholds = [float(x) for x in args.thresholds.split(",")]
    engine = Engine(load_encoder(args.model))
    train = load_pairs(DATA / "train.csv.gz")
    _, va_idx = encoder_split(train, engine.encoder.manifest)
    val = train.subset(va_idx)
    gold_of = duplicate_clusters(train)
    qids = sorted(set(val.qid1.tolist()) | set(val.qid2.tolist()))
    res = {"validation": sweep(engine, [train.questions[q] for q in qids], np.array([gold_of[q] for q in qids]), thresholds,
                               "the encoder's validation split")}
    dev = load_pairs(DATA / "dev.csv")
    gold_dev = duplicate_clusters(dev)
    qids = sorted(dev.questions)
    res["dev"] = sweep(engine, [dev.questions[q] for q in qids], np.array([gold_dev[q] for q in qids]), thresholds, "dev")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2, default=float))


if __name__ == "__main__":
    main()
