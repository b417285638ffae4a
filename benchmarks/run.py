"""Recall, pair classification and speed: dupfinder side by side with TF-IDF and all-MiniLM-L6-v2, in one run.

Retrieval: the question1 of every duplicate dev pair is a query against all dev questions plus N
distractors from the training file (none shares a duplicate cluster with a dev question); relevant
are the rest of the query's cluster. Pairs: dev accuracy, F1 and ROC-AUC. Speed: encoding, query
latency, and for dupfinder its index (exact and HNSW) and batch dedup. Prints a markdown table and
writes JSON to --out; it measures, it never asserts.

Usage: python benchmarks/run.py [--model DIR] [--distractors 100000 | --quick] [--no-baselines]
                                [--threads 2] [--seed 0] [--out benchmarks/results/]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "quora"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Example: python benchmarks/run.py --quick --model models/mine")
    ap.add_argument("--model", default=None, help="dupfinder model directory (default: the shipped model)")
    ap.add_argument("--dev", default=str(DATA / "dev.csv"), help="dev pairs file (default: %(default)s)")
    ap.add_argument("--train", default=str(DATA / "train.csv.gz"), help="training pairs file the distractors come from")
    ap.add_argument("--distractors", type=int, default=100_000, help="training questions added to the corpus (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="20,000 distractors")
    ap.add_argument("--no-baselines", action="store_true", help="dupfinder only")
    ap.add_argument("--no-index", action="store_true", help="skip the index build, index query and dedup rows")
    ap.add_argument("--latency-queries", type=int, default=300, help="single questions timed one at a time (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch, FAISS and BLAS (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the distractor sample and the latency queries")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the JSON results (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.quick:
        args.distractors = 20_000
    if args.distractors < 0 or args.threads < 1 or args.latency_queries < 1:
        ap.error("--distractors must be >= 0, --threads and --latency-queries >= 1")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    import resource

    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles_ms(seconds: list[float]) -> dict:
    import numpy as np

    ms = np.asarray(seconds) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "n": len(ms)}


def timed_each(fn, items) -> dict:
    """Latency of fn(item) for each item, after a warm-up on the first few."""
    for item in items[:5]:
        fn(item)
    seconds = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        seconds.append(time.perf_counter() - start)
    return percentiles_ms(seconds)


def encode_corpus(encode, texts, label: str):
    """Encode in length-sorted chunks (progress on a tty), after a warm-up; returns (vectors, seconds)."""
    import numpy as np

    from dupfinder.progress import Progress

    encode(texts[:256])  # warm-up: first-call allocations and lazy initialization stay out of the timing
    order = np.argsort([len(t) for t in texts], kind="stable")
    chunk = 4096
    out = None
    bar = Progress(len(texts), label, unit="q")
    start = time.perf_counter()
    for s in range(0, len(texts), chunk):
        idx = order[s : s + chunk]
        v = encode([texts[i] for i in idx.tolist()])  # (b, d)
        if out is None:
            out = np.empty((len(texts), v.shape[1]), dtype=np.float32)
        out[idx] = v
        bar.update(len(idx))
    seconds = time.perf_counter() - start
    bar.close()
    return out, seconds


def pair_block(scores, labels, tau, unseen) -> dict:
    """ROC-AUC, metrics at the model's tau (if it has one) and at the best threshold on dev itself."""
    import numpy as np

    from dupfinder.evaluation.metrics import pair_metrics, roc_auc, threshold_sweep

    sweep = threshold_sweep(scores, labels)
    best_tau = float(sweep["threshold"][int(np.argmax(sweep["accuracy"]))])
    out = {
        "roc_auc": roc_auc(scores, labels),
        # chosen on the very pairs it is scored on: an upper bound, the same rule for every system
        "at_best_dev_threshold": pair_metrics(scores, labels, best_tau),
        "unseen_roc_auc": roc_auc(scores[unseen], labels[unseen]) if unseen.any() else None,
    }
    if tau is not None:
        out["at_tau"] = pair_metrics(scores, labels, tau)
        out["unseen_at_tau"] = pair_metrics(scores[unseen], labels[unseen], tau) if unseen.any() else None
    return out


def run_dense(name, encode, bench, dev, unseen, tau, latency_texts) -> tuple:
    """Encode the corpus, score retrieval and pairs, and time single queries (encode + exact FAISS top-10).

    Returns the corpus vectors (n, d) and the measurements.
    """
    import faiss

    from dupfinder.evaluation.retrieval import evaluate_vectors, pair_scores

    log(f"{name}: encoding {len(bench.corpus):,} questions")
    vectors, seconds = encode_corpus(encode, bench.corpus, name)
    start = time.perf_counter()
    retrieval = evaluate_vectors(bench, vectors)
    search_seconds = time.perf_counter() - start
    pairs = pair_block(pair_scores(bench, vectors, dev), dev.label, tau, unseen)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    log(f"{name}: timing {len(latency_texts)} single queries")
    return vectors, {
        "retrieval": retrieval,
        "pairs": pairs,
        "speed": speed_row(len(bench.corpus), seconds, search_seconds, lambda t: index.search(encode([t]), 10), latency_texts),
    }


def speed_row(n: int, seconds: float, search_seconds: float, query, latency_texts) -> dict:
    """Encoding (or fitting) rate, benchmark search time and single-query latency of one system."""
    return {
        "encode_seconds": seconds,
        "encode_qps": n / seconds,
        "benchmark_search_seconds": search_seconds,
        "query_ms": timed_each(query, latency_texts),
    }


def run_tfidf(bench, dev, unseen, latency_texts) -> dict:
    from baselines import Tfidf

    from dupfinder.evaluation.retrieval import evaluate_ranker, pair_rows

    system = Tfidf()
    log(f"TF-IDF: fitting {len(bench.corpus):,} questions")
    start = time.perf_counter()
    system.fit(bench.corpus)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    retrieval = evaluate_ranker(bench, system.rank)
    search_seconds = time.perf_counter() - start
    pairs = pair_block(system.pair_scores(*pair_rows(bench, dev)), dev.label, None, unseen)
    return {
        "version": system.version,
        "description": system.description,
        "retrieval": retrieval,
        "pairs": pairs,
        "speed": speed_row(len(bench.corpus), seconds, search_seconds, lambda t: system.query(t, 10), latency_texts),
    }


class Precomputed:
    """The dupfinder encoder, answering from vectors already computed for these exact texts, so an
    index build is timed without encoding the corpus again (the encode row times that). Any other
    text is encoded for real."""

    def __init__(self, encoder, texts, vectors):
        self._encoder, self._vectors = encoder, vectors
        self._row = {t: i for i, t in enumerate(texts)}

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode(self, texts, batch_size: int = 512, progress=None):
        import numpy as np

        rows = np.array([self._row.get(t, -1) for t in texts], dtype=np.int64)
        out = np.empty((len(texts), self._vectors.shape[1]), dtype=np.float32)  # (n, d)
        out[rows >= 0] = self._vectors[rows[rows >= 0]]
        if (rows < 0).any():
            out[rows < 0] = self._encoder.encode([t for t, r in zip(texts, rows.tolist()) if r < 0], batch_size=batch_size)
        if progress is not None:
            progress(len(texts))
        return out


def run_product(encoder, bench, vectors, latency_texts) -> dict:
    """dupfinder's own index (flat and HNSW, through `Engine`) and batch dedup (`Engine.dedup`).

    Index builds start from the corpus vectors; dedup is timed end to end, encoding included.
    """
    import tempfile

    import numpy as np

    from dupfinder.engine import Engine
    from dupfinder.store.base import Question

    out: dict = {}
    questions = [Question(str(q), t) for q, t in zip(bench.corpus_qids.tolist(), bench.corpus)]
    query_vectors = vectors[bench.queries]  # (q, d)
    with tempfile.TemporaryDirectory(prefix="dupfinder-bench-") as tmp:
        found = {}
        for kind in ("flat", "hnsw"):
            directory = Path(tmp) / kind
            log(f"dupfinder index ({kind}): building over {len(questions):,} questions")
            with Engine.for_writing(directory, encoder.path, kind) as writer:
                writer.encoder = Precomputed(writer.encoder, bench.corpus, vectors)
                start = time.perf_counter()
                report = writer.add(questions)
                build = time.perf_counter() - start
            # opened as `dupfinder query` opens it: the store with the model that built it
            with Engine.open(directory, encoder.path) as engine:
                found[kind] = engine.store.search(query_vectors, 10)  # scores (q, 10), ids (q, 10)
                log(f"dupfinder index ({kind}): timing {len(latency_texts)} single queries")
                latency = timed_each(lambda t: engine.query([t], k=10), latency_texts)
                size = engine.info()["size_bytes"]
            out[kind] = {"build_seconds": build, "questions": report.count, "query_ms": latency, "size_bytes": size}
        (exact_scores, _), (hnsw_scores, _) = found["flat"], found["hnsw"]
        # tie-aware: an HNSW hit counts when it scores at least the exact 10th, so among equal
        # cosines (questions that tokenize alike) either one is right
        hits = (hnsw_scores >= exact_scores[:, -1:] - 1e-6).sum(1)
        out["hnsw"]["recall_at_10_vs_exact"] = float(np.mean(hits) / 10)
    log(f"dupfinder dedup: {len(bench.corpus):,} questions")
    start = time.perf_counter()
    result, _ = Engine(encoder).dedup(bench.corpus, np.ones(len(bench.corpus), dtype=bool))
    seconds = time.perf_counter() - start
    out["dedup"] = {
        "questions": len(bench.corpus), "seconds": seconds, "qps": len(bench.corpus) / seconds,
        "clusters": int(len(np.unique(result.cluster[result.cluster >= 0]))), "stats": result.stats,
    }
    return out


def fmt(value, spec: str = ".4f") -> str:
    return "–" if value is None else format(value, spec)


def table(results: dict) -> str:
    """The side-by-side markdown table: one column per system."""
    systems = [s for s in results["systems"] if "skipped" not in results["systems"][s]]
    cols = {s: results["systems"][s] for s in systems}

    def row(label, get, spec=".4f"):
        cells = []
        for s in systems:
            try:
                cells.append(fmt(get(cols[s]), spec))
            except (KeyError, TypeError):
                cells.append("–")
        return f"| {label} | " + " | ".join(cells) + " |"

    k = "@10"
    lines = [
        "| | " + " | ".join(systems) + " |",
        "|---|" + "---:|" * len(systems),
        row("P@1", lambda r: r["retrieval"]["p@1"]),
        row(f"Recall{k}", lambda r: r["retrieval"][f"recall{k}"]),
        row(f"MRR{k}", lambda r: r["retrieval"][f"mrr{k}"]),
        row(f"nDCG{k}", lambda r: r["retrieval"][f"ndcg{k}"]),
        row(f"nDCG{k}, queries unseen in training", lambda r: r["retrieval"]["unseen"][f"ndcg{k}"]),
        row(f"nDCG{k}, queries seen in training", lambda r: r["retrieval"]["seen"][f"ndcg{k}"]),
        row("pairs: ROC-AUC", lambda r: r["pairs"]["roc_auc"]),
        row("pairs: ROC-AUC, both questions unseen in training", lambda r: r["pairs"]["unseen_roc_auc"]),
        row("pairs: accuracy at the model's tau", lambda r: r["pairs"]["at_tau"]["accuracy"]),
        row("pairs: F1 at the model's tau", lambda r: r["pairs"]["at_tau"]["f1"]),
        row("pairs: accuracy at the best dev threshold*", lambda r: r["pairs"]["at_best_dev_threshold"]["accuracy"]),
        row("pairs: F1 at the best dev threshold*", lambda r: r["pairs"]["at_best_dev_threshold"]["f1"]),
        row("encode, questions/s", lambda r: r["speed"]["encode_qps"], ",.0f"),
        row("query p50, ms (encode + exact top-10)", lambda r: r["speed"]["query_ms"]["p50"], ".2f"),
        row("query p99, ms", lambda r: r["speed"]["query_ms"]["p99"], ".2f"),
        row("peak RSS so far, MB", lambda r: r["peak_rss_mb"], ",.0f"),
    ]
    return "\n".join(lines)


def product_lines(product: dict) -> list[str]:
    if "skipped" in product:
        return [f"note: {product['skipped']}"]
    f, h, d = product["flat"], product["hnsw"], product["dedup"]
    return [
        "| dupfinder index and dedup | exact (flat) | HNSW |",
        "|---|---:|---:|",
        f"| index build from vectors, s (FAISS + SQLite, {f['questions']:,} questions) | {f['build_seconds']:.1f} | {h['build_seconds']:.1f} |",
        f"| query p50, ms (`Engine.query`, k=10) | {f['query_ms']['p50']:.2f} | {h['query_ms']['p50']:.2f} |",
        f"| query p99, ms | {f['query_ms']['p99']:.2f} | {h['query_ms']['p99']:.2f} |",
        f"| recall@10 against exact | 1 | {h['recall_at_10_vs_exact']:.4f} |",
        f"| index size, MB | {f['size_bytes'] / 1e6:.1f} | {h['size_bytes'] / 1e6:.1f} |",
        "",
        f"dedup, end to end with encoding: {d['questions']:,} questions in {d['seconds']:.1f} s = {d['qps']:,.0f} questions/s, {d['clusters']:,} clusters "
        f"({d['stats'].get('search', '')})",
    ]


def target_lines(results: dict) -> list[str]:
    """How the run stands against the project's targets; reported, never asserted."""
    s = results["systems"]
    ours = s.get("dupfinder")
    lines = []
    keys = ["p@1", "recall@10", "mrr@10", "ndcg@10"]
    tfidf = s.get("TF-IDF", {})
    if ours and "retrieval" in tfidf:
        worse = [m for m in keys if ours["retrieval"][m] <= tfidf["retrieval"][m]]
        lines.append("beats TF-IDF on every retrieval metric: " + ("yes" if not worse else f"no ({', '.join(worse)})"))
    minilm = s.get("all-MiniLM-L6-v2", {})
    if ours and "retrieval" in minilm:
        diff = ours["retrieval"]["ndcg@10"] - minilm["retrieval"]["ndcg@10"]
        lines.append(f"nDCG@10 against all-MiniLM-L6-v2: {diff:+.4f} ({'matches or beats' if diff >= 0 else 'below'})")
        ratio = ours["speed"]["encode_qps"] / minilm["speed"]["encode_qps"]
        lines.append(f"encoding speed against all-MiniLM-L6-v2: {ratio:.1f}x (target: at least 30x)")
    lines.append(f"whole run: {results['seconds'] / 60:.1f} min (target: under 15 min for the default run on 2 cores)")
    return lines


def main(argv=None) -> dict:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy, torch and faiss start their thread pools
    t_run = time.perf_counter()
    import json

    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent))
    from common import environment, print_environment, set_threads

    from dupfinder import load_model
    from dupfinder.atomic import write_atomic
    from dupfinder.evaluation.retrieval import build_benchmark, unseen_pair_mask
    from dupfinder.io import load_pairs

    set_threads(args.threads)
    env = environment()
    env["threads"] = args.threads
    print_environment(env)
    encoder = load_model(args.model)
    print(f"# dupfinder model: {encoder.path} (fingerprint {encoder.fingerprint}, dimension {encoder.dim}, tau {encoder.threshold:.4f})")

    log(f"reading {args.dev} and {args.train}")
    dev = load_pairs(args.dev)
    train = load_pairs(args.train)
    start = time.perf_counter()
    bench = build_benchmark(dev, train, args.distractors, seed=args.seed)
    unseen = unseen_pair_mask(dev, train)
    del train
    summary = bench.summary()
    print(
        f"# retrieval benchmark: {summary['queries']:,} queries ({summary['unseen_queries']:,} unseen in training), "
        f"corpus {summary['corpus']:,} = {summary['dev_questions']:,} dev questions + {summary['distractors']:,} distractors "
        f"(seed {args.seed}; left out: " + ", ".join(f"{n:,} {why}" for why, n in summary["excluded_distractor_candidates"].items())
        + f"); {summary['relevant_per_query_mean']:.2f} relevant per query; built in {time.perf_counter() - start:.1f} s"
    )
    print(f"# pairs: {len(dev):,} dev pairs, {int(dev.label.sum()):,} duplicates, {int(unseen.sum()):,} with both questions unseen in training")
    sys.stdout.flush()
    rng = np.random.default_rng(args.seed)
    latency_texts = [bench.corpus[i] for i in rng.choice(len(bench.corpus), size=min(args.latency_queries, len(bench.corpus)), replace=False).tolist()]

    results = {**env, "args": vars(args), "benchmark": summary, "dev_pairs": len(dev), "systems": {}, "complete": False}
    systems = results["systems"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = out / f"bench-{'quick' if args.quick else f'n{args.distractors}'}-{stamp}.json"

    def save(stage: str) -> None:
        """Write what is measured so far, so an interrupted run still leaves its finished stages."""
        results["seconds"] = time.perf_counter() - t_run
        write_atomic(path, json.dumps(results, indent=2, default=float).encode())
        r = systems.get(stage, {})
        if "retrieval" in r:
            m = r["retrieval"]
            log(f"{stage}: nDCG@10 {m['ndcg@10']:.4f}, P@1 {m['p@1']:.4f}, encode {r['speed']['encode_qps']:,.0f} q/s; saved to {path}")

    vectors, measured = run_dense("dupfinder", encoder.encode, bench, dev, unseen, encoder.threshold, latency_texts)
    systems["dupfinder"] = {
        "version": f"dupfinder {env['versions']['dupfinder']}",
        "description": f"{encoder.path} ({encoder.fingerprint}), exact cosine",
        **measured,
        "peak_rss_mb": peak_rss_mb(),
    }
    save("dupfinder")
    if args.no_index:
        product = {"skipped": "--no-index: index and dedup rows left out"}
    else:
        product = run_product(encoder, bench, vectors, latency_texts)
    del vectors
    results["dupfinder_index_and_dedup"] = product
    save("index")

    notes = []
    if args.no_baselines:
        notes.append("--no-baselines: TF-IDF and all-MiniLM-L6-v2 not run")
    else:
        from baselines import MiniLM, Missing

        try:
            systems["TF-IDF"] = {**run_tfidf(bench, dev, unseen, latency_texts), "peak_rss_mb": peak_rss_mb()}
        except Missing as e:
            systems["TF-IDF"] = {"skipped": str(e)}
        save("TF-IDF")
        try:
            start = time.perf_counter()
            minilm = MiniLM()
            load_seconds = time.perf_counter() - start
            _, measured = run_dense("all-MiniLM-L6-v2", minilm.encode, bench, dev, unseen, None, latency_texts)
            systems["all-MiniLM-L6-v2"] = {
                "version": minilm.version,
                "description": minilm.description,
                **measured,
                "load_seconds": load_seconds,
                "peak_rss_mb": peak_rss_mb(),
            }
            env["versions"]["sentence-transformers"] = minilm.version
        except Missing as e:
            systems["all-MiniLM-L6-v2"] = {"skipped": str(e)}
        save("all-MiniLM-L6-v2")
        if "version" in systems.get("TF-IDF", {}):
            env["versions"]["TF-IDF"] = systems["TF-IDF"]["version"]
        notes += [f"{name} skipped: {r['skipped']}" for name, r in systems.items() if "skipped" in r]
    results["notes"] = notes
    results["complete"] = True
    save("all")

    print()
    print(table(results))
    print("\n* threshold chosen on the dev pairs themselves, the same rule for every system: an upper bound, not a deployable setting")
    for name, r in systems.items():
        if "version" in r:
            print(f"  {name}: {r['version']}; {r['description']}")
    print()
    for line in product_lines(product) + [""] + notes + target_lines(results):
        print(line)
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    from dupfinder.errors import DupfinderError

    try:
        main()
    except DupfinderError as e:
        sys.exit(f"Error: {e}")
