"""The verdict stage against the cosine rule, side by side in one run: dev pairs at each rule's
stored threshold (all, and the pairs whose questions the training file never had): the whole
verdict stage, the pair head alone where the stage also has a verifier, and the cosine; the
named pairs, dedup of dev's questions against gold clusters, and warm query latency with verdicts.

    python benchmarks/bench_verdict.py [--model DIR] [--threads 1] [--n-index 100000] [--queries 1000] [--no-dedup]

Dev is never used to train or to choose a threshold; both thresholds are the ones the model
stores. Latency: one question per call, k=10, after 50 warm-up queries, against an index of the
first N unique training questions (built once into --work). Never asserts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, print_environment, set_threads  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"
NAMED = [  # (question1, question2, duplicate?): the pairs the verdict is held to
    ("How old are you?", "What is your age?", True), ("Where are you from?", "Where are you going?", False),
    ("Can you see me?", "Are you seeing me?", True), ("When is the game?", "What time is the game?", True),
    ("Where are thou?", "Where are you?", True), ("What is your age?", "Where are you from?", False),
    ("How do I install Zorblax?", "How do I install Quibbit?", False),
    ("How do I reset my password?", "How do I reset my router?", False),
    ("Why is my iPhone battery draining?", "Why is my Android battery draining?", False),
]


def pairs_block(engines: dict, dev, unseen: np.ndarray) -> dict:
    from dupfinder.evaluation.calibrate import metrics_at

    out = {}
    print(f"\n## dev pairs ({len(dev):,}; {int(unseen.sum()):,} unseen), at each rule's stored threshold")
    print(f"{'rule':<12} {'thr':>7} | {'acc':>6} {'P':>6} {'R':>6} {'F1':>6} {'AUC':>6} | unseen {'acc':>6} {'AUC':>6} | s")
    for name, engine in engines.items():
        t0 = time.perf_counter()
        s = engine.pair_scores(dev)
        seconds = time.perf_counter() - t0
        m = metrics_at(s, dev.label, engine.threshold)
        u = metrics_at(s[unseen], dev.label[unseen], engine.threshold)
        out[name] = {"threshold": engine.threshold, "all": m, "unseen": u, "seconds": round(seconds, 1)}
        print(f"{name:<12} {engine.threshold:>7.4f} | {m['accuracy']:.4f} {m['precision']:.4f} {m['recall']:.4f} {m['f1']:.4f} "
              f"{m['roc_auc']:.4f} |        {u['accuracy']:.4f} {u['roc_auc']:.4f} | {seconds:.0f}")
    return out


def named_block(engines: dict) -> dict:
    out = {}
    print("\n## named pairs (score, verdict; * = right)")
    for name, engine in engines.items():
        rows = []
        for (a, b, want), r in zip(NAMED, engine.similarities([(a, b) for a, b, _ in NAMED])):
            rows.append({"question1": a, "question2": b, "want": want, "score": r["score"], "duplicate": r["duplicate"],
                         "right": r["duplicate"] == want})
        out[name] = {"right": sum(r["right"] for r in rows), "pairs": rows}
        print(f"{name:<12} {out[name]['right']}/{len(rows)}  " + "  ".join(
            f"{r['score']:.3f}{'*' if r['right'] else ''}" for r in rows))
    return out


def dedup_block(engines: dict, dev) -> dict:
    from bench_dedup import pairwise_metrics

    from dupfinder.io import duplicate_clusters

    gold_of = duplicate_clusters(dev)
    qids = sorted(dev.questions)
    texts = [dev.questions[q] for q in qids]
    gold = np.array([gold_of[q] for q in qids])
    out = {}
    print(f"\n## dedup of dev's {len(texts):,} questions against gold clusters (complete linkage, k 16)")
    for name, engine in engines.items():
        t0 = time.perf_counter()
        res, _ = engine.dedup(texts, np.ones(len(texts), bool))
        seconds = time.perf_counter() - t0
        pm = pairwise_metrics(res.cluster, gold)
        sizes = np.bincount(res.cluster)
        out[name] = {"pairwise": pm, "largest_cluster": int(sizes.max()), "clusters": int(len(sizes)), "seconds": round(seconds, 1),
                     "stats": res.stats}
        print(f"{name:<12} P {pm['precision']:.4f} R {pm['recall']:.4f} F1 {pm['f1']:.4f}  largest {sizes.max()}  {seconds:.1f} s")
    return out


def latency_block(model, work: Path, n_index: int, n_queries: int, dev) -> dict:
    from dupfinder.engine import Engine, read_questions
    from dupfinder.io import load_pairs
    from dupfinder.model.encoder import use_jit

    from dupfinder.model.files import read_model_dir

    use_jit(True)
    location = work / f"index-{n_index}-{read_model_dir(model).fingerprint}"  # one per model: a store keeps its model
    if not (location / "manifest.json").exists():
        train = load_pairs(DATA / "train.csv.gz", need_label=False)
        qids = sorted(train.questions)[:n_index]
        from dupfinder.store.base import Question

        t0 = time.perf_counter()
        with Engine.for_writing(str(location), model) as engine:
            engine.add([Question(str(q), train.questions[q]) for q in qids])
        print(f"built {location} ({n_index:,} questions) in {time.perf_counter() - t0:.0f} s")
    queries = list(dict.fromkeys(dev.texts(1)))[:n_queries]
    out = {"index": str(location), "questions": n_index, "queries": len(queries), "k": 10}
    print(f"\n## warm query latency, k=10, {len(queries):,} dev questions, one per call, {n_index:,}-question index")
    for mode in ("cosine", "head", "auto"):
        with Engine.open(str(location), model, verdict=mode) as engine:
            if engine.verdict.kind != {"auto": "head+verifier"}.get(mode, mode):
                continue
            for q in queries[:50]:
                engine.query([q], 10)
            times = []
            for q in queries:
                t0 = time.perf_counter()
                engine.query([q], 10)
                times.append(time.perf_counter() - t0)
            ms = np.array(times) * 1000
            out[mode] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                         "verifier_pairs_per_query": getattr(engine.verdict.head, "calls", 0) / (len(queries) + 50)}
            print(f"{mode:<8} p50 {out[mode]['p50_ms']:.2f} ms  p99 {out[mode]['p99_ms']:.2f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-index", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-verdict"))
    ap.add_argument("--no-dedup", action="store_true")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    set_threads(args.threads)
    env = environment()
    print_environment(env)
    from dupfinder.engine import Engine, load_encoder
    from dupfinder.evaluation.pairs import unseen_mask
    from dupfinder.io import load_pairs

    encoder = load_encoder(args.model)
    engines = {"stage": Engine(encoder, verdict="auto"), "cosine": Engine(encoder, verdict="cosine")}
    if engines["stage"].verdict.kind == "cosine":
        print(f"note: {engines['stage'].verdict.note}")
        del engines["stage"]
    elif engines["stage"].verdict.kind == "head+verifier":  # the head alone too, for comparison
        engines = {"stage": engines["stage"], "head": Engine(encoder, verdict="head"), "cosine": engines["cosine"]}
    stage = engines.get("stage")
    if stage is not None and hasattr(stage.verdict.head, "rates"):
        bare = Engine(load_encoder(args.model), verdict="auto")  # the same stage without the rewording rule
        bare.verdict.head.rates.clear()
        engines = {"stage": engines["stage"], "no-rewording": bare, **{k: v for k, v in engines.items() if k != "stage"}}
    dev = load_pairs(DATA / "dev.csv")
    unseen = unseen_mask(dev, DATA / "train.csv.gz")
    record = {"environment": env, "model": str(encoder.path), "fingerprint": encoder.fingerprint,
              "verdict": encoder.manifest.get("verdict", {}).get("sha256")}
    record["pairs"] = pairs_block(engines, dev, unseen)
    record["named"] = named_block(engines)
    if not args.no_dedup:
        record["dedup"] = dedup_block(engines, dev)
    if not args.no_latency:
        args.work.mkdir(parents=True, exist_ok=True)
        record["latency"] = latency_block(args.model, args.work, args.n_index, args.queries, dev)
    out = args.out or Path(__file__).parent / "results" / f"verdict-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
