"""Dedup with the verifier on more pairs: does the stack (head + verifier) on every pair cluster better
than the shipped cascade (the verifier only where the head's probability lies in its band)?

Same candidate edges (k 16, at the head's cosine floor), same complete linkage (dupfinder's own
`cluster`, as `dupfinder dedup` runs it), same threshold (the stage's, 0.5303): only which pairs
the verifier reads changes. Variants are `EDGES:CROSS`, each `band` (the cascade) or `all` (the
stack): EDGES for the candidate edges, CROSS for the other pairs complete linkage asks about
when it merges two clusters.

  band:band   shipped
  all:all     the stack on every pair
  band:all    the stack on the cross-pair checks only (edges as shipped)
  all:band    the stack on the candidate edges only (cross pairs as shipped)
  lazy        the stack decides every merge, but the verifier reads a pair only when a merge asks
              about it: the edges at or below the band (where the stack may accept what the head
              rejects) are read up front, the edges above it keep the cascade's score for their
              place in the order, and each pair a merge needs (the edge itself included) is read
              then; a pair the stack already scored below the threshold refuses without reading more

Each pair's head probability and verifier logit are computed once and shared by the variants;
`verifier_calls` counts the distinct pairs a variant has the verifier read (what `Cascade.calls`
would count), split into those read before clustering (the candidate edges) and in it (cross
pairs; for `lazy` also the edges above the band that a merge asked about). Sets: dev's questions
and the encoder's validation split of the training file, as `research/dedup_linkage.py` builds
them; pairwise P/R/F1 against gold clusters and on the labeled pairs.

Measured (research/results/dedup_stack.json, one thread): the stack on every pair lifts F1 from
0.416 to 0.422 on dev and from 0.649 to 0.658 on validation, nearly all of it from the candidate
edges (all:band 0.420 / 0.659; band:all 0.415 / 0.649), for twice the verifier's reads on dev
(23,478 -> 45,999). `lazy` saves little (41,250): complete linkage asks about nearly every
accepted edge as a cross pair of some merge; and ordering by the cascade loses half the gain.

    python research/dedup_stack.py [--model DIR] [--sets dev,validation] [--variants band:band,all:all,band:all,all:band,lazy] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "research"))
from common import environment, print_environment, set_threads  # noqa: E402
from dedup_linkage import labeled_metrics, load_set, pairwise_metrics  # noqa: E402

from dupfinder.dedup import DedupConfig, encode_distinct, neighbour_edges  # noqa: E402
from dupfinder.dedup_linkage import CHECK_TOLERANCE, cluster, merge_strongest_first, with_scores  # noqa: E402
from dupfinder.engine import Engine, load_encoder  # noqa: E402

SHIPPED = "band:band"


def research_environment() -> dict:
    """The benchmarks' environment record, printed, with the commit and any uncommitted change to dupfinder/."""
    env = environment()
    print_environment(env)
    env["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    env["dupfinder_changed"] = subprocess.run(["git", "status", "--short", "--", "dupfinder"], cwd=ROOT, capture_output=True,
                                              text=True).stdout.split("\n")[:-1]
    return env


class PairCache:
    """Head probability and verifier logit of any pair of distinct questions, each computed once
    (keyed by the pair, either order), with the seconds each model took."""

    def __init__(self, cascade, enc):
        self.cascade, self.enc, self.n = cascade, enc, len(enc.x)
        self.p: dict[int, float] = {}
        self.logit: dict[int, float] = {}
        self.read: dict[int, object] = {}
        self.seconds = {"head": 0.0, "verifier": 0.0}
        self.computed = {"head": 0, "verifier": 0}

    def keys(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.minimum(u, v).astype(np.int64) * self.n + np.maximum(u, v)

    def questions(self, rows: list[int]) -> list:
        out = []
        for r in rows:
            q = self.read.get(r)
            if q is None:
                q = self.read[r] = self.cascade.featurizer.question(self.enc.texts[r])
            out.append(q)
        return out

    def _cached(self, model: str, store: dict, u: np.ndarray, v: np.ndarray, compute) -> np.ndarray:
        """`compute(u, v)` of the pairs not in `store` yet, in chunks, timed and counted for `model`."""
        keys = self.keys(u, v)
        todo = [i for i, k in enumerate(keys.tolist()) if k not in store]
        for s in range(0, len(todo), 65536):
            idx = np.asarray(todo[s : s + 65536], np.int64)
            t0 = time.perf_counter()
            out = compute(u[idx], v[idx])
            self.seconds[model] += time.perf_counter() - t0
            self.computed[model] += len(idx)
            store.update(zip(keys[idx].tolist(), np.asarray(out, np.float64).tolist()))
        return np.fromiter((store[k] for k in keys.tolist()), np.float64, len(keys))

    def head(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self._cached("head", self.p, u, v, lambda cu, cv: self.cascade.head.score(
            self.enc.x[cu], self.enc.x[cv], self.questions(cu.tolist()), self.questions(cv.tolist())))

    def logits(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        tok = self.cascade._tokens
        return self._cached("verifier", self.logit, u, v, lambda cu, cv: self.cascade.verifier.logits(
            [tok(q) for q in self.questions(cu.tolist())], [tok(q) for q in self.questions(cv.tolist())]))


class Rule:
    """Scores pairs as the cascade (`everywhere=False`) or the stack (`everywhere=True`) would, from
    the cache; remembers which pairs it had the verifier read."""

    def __init__(self, cache: PairCache, everywhere: bool, read: set):
        self.cache, self.everywhere, self.read = cache, everywhere, read

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        u, v = np.asarray(u, np.int64), np.asarray(v, np.int64)
        ver = self.cache.cascade.verifier
        p = self.cache.head(u, v)
        out = ver.combine(p)
        idx = np.arange(len(p)) if self.everywhere else np.flatnonzero(ver.in_band(p))
        if len(idx):
            out[idx] = ver.combine(p[idx], self.cache.logits(u[idx], v[idx]))
            self.read.update(self.cache.keys(u[idx], v[idx]).tolist())
        return out


def lazy_cluster(cache: PairCache, a: np.ndarray, b: np.ndarray, thr: float, floor: float, read: set):
    """Complete linkage where the stack decides every merge and the verifier reads the edges above
    its band only when a merge asks about them. Returns (clusters, edge scores, verifier calls up front)."""
    enc, ver = cache.enc, cache.cascade.verifier
    x = enc.x
    p = cache.head(a, b)
    s = ver.combine(p)  # the cascade's score above the band: at or above the threshold
    now = np.flatnonzero(p <= ver.band[1])
    s[now] = Rule(cache, True, read)(a[now], b[now])
    upfront = len(read)
    stack = Rule(cache, True, read)

    def accept(ri: int, mi: list[int], mj: list[int]) -> bool:
        if (x[mi] @ x[mj].T < floor - CHECK_TOLERANCE).any():  # (|A|, |B|): below the cosine floor, no duplicate
            return False
        u, v = (g.ravel() for g in np.meshgrid(np.asarray(mi, np.int64), np.asarray(mj, np.int64), indexing="ij"))
        keys = cache.keys(u, v).tolist()
        if any(k in cache.logit and ver.combine(np.array([cache.p[k]]), np.array([cache.logit[k]]))[0] < thr - CHECK_TOLERANCE
               for k in keys):
            return False
        return bool((stack(u, v) >= thr - CHECK_TOLERANCE).all())

    clusters = with_scores(x, *merge_strongest_first(len(x), a, b, s.astype(np.float32), thr, enc.weight, enc.first_row, accept))
    return clusters, s.astype(np.float32), upfront


def evaluate(engine, name: str, variants: list[str], k: int) -> dict:
    cascade = engine.verdict.head
    thr, floor = cascade.threshold, cascade.cosine_floor
    texts, gold, labeled = load_set(name, engine)
    t0 = time.perf_counter()
    enc = encode_distinct(engine.encoder, texts, np.ones(len(texts), bool))
    t1 = time.perf_counter()
    a, b, _ = neighbour_edges(enc.x, floor, DedupConfig(threshold=floor, k=k))
    t2 = time.perf_counter()
    cache = PairCache(cascade, enc)
    p_head = cache.head(a, b)
    band = cascade.verifier.in_band(p_head)
    print(f"\n## {name}: {len(texts):,} questions, {len(enc.x):,} distinct, {len(a):,} candidate edges, "
          f"{int(band.sum()):,} in the verifier's band ({band.mean():.1%}); threshold {thr:.4f}, cosine floor {floor:.4f}; "
          f"encode {t1 - t0:.1f} s, search {t2 - t1:.1f} s", flush=True)
    out = {"questions": len(texts), "distinct": len(enc.x), "edges": len(a), "edges_in_band": int(band.sum()),
           "threshold": thr, "cosine_floor": floor, "variants": {}}
    for variant in variants:
        read: set = set()
        t0 = time.perf_counter()
        if variant == "lazy":
            c, p, edge_calls = lazy_cluster(cache, a, b, thr, floor, read)
            t1 = t0
        else:
            edge_mode, cross_mode = variant.split(":")
            p = Rule(cache, edge_mode == "all", read)(a, b).astype(np.float32)
            edge_calls = len(read)
            t1 = time.perf_counter()
            c = cluster(enc.x, a, b, p, thr, "complete", enc.weight, enc.first_row, Rule(cache, cross_mode == "all", read), floor)
        t2 = time.perf_counter()
        root = c.canonical
        pred = root[enc.group]
        m = pairwise_metrics(pred, gold)
        lm = labeled_metrics(dict(enumerate(pred.tolist())), *labeled)
        roots, sizes = np.unique(root, return_counts=True)
        big = np.flatnonzero(root == roots[sizes.argmax()])[:8]
        row = {"precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "clusters": len(sizes),
               "multi": int((sizes > 1).sum()), "largest": int(sizes.max()), "edges_accepted": int((p >= thr).sum()),
               "merges_refused": c.merges_refused, "verifier_calls": len(read), "verifier_calls_before_clustering": edge_calls,
               "verifier_calls_in_clustering": len(read) - edge_calls, "pred_pairs": m["pred_pairs"], "gold_pairs": m["gold_pairs"],
               "labeled": lm, "seconds_edges_from_cache": round(t1 - t0, 2), "seconds_cluster": round(t2 - t1, 2),
               "largest_sample": [enc.texts[i] for i in big.tolist()]}
        out["variants"][variant] = row
        print(f"{variant:<10} P {m['precision']:.4f} R {m['recall']:.4f} F1 {m['f1']:.4f}  clusters {len(sizes):,} "
              f"largest {row['largest']}  edges accepted {row['edges_accepted']:,}  verifier calls {len(read):,} "
              f"(before clustering {edge_calls:,}, in it {len(read) - edge_calls:,})  labeled P {lm['precision']:.4f} R {lm['recall']:.4f} "
              f"F1 {lm['f1']:.4f}", flush=True)
    # per-pair cost on this set's own pairs, one thread: what the verifier on every edge would add
    per = {kk: cache.seconds[kk] / max(cache.computed[kk], 1) for kk in cache.seconds}
    out["cost"] = {"head_pairs": cache.computed["head"], "head_seconds": round(cache.seconds["head"], 2),
                   "verifier_pairs": cache.computed["verifier"], "verifier_seconds": round(cache.seconds["verifier"], 2),
                   "head_ms_per_pair": round(1e3 * per["head"], 4), "verifier_ms_per_pair": round(1e3 * per["verifier"], 4)}
    print(f"cost: head {cache.computed['head']:,} pairs in {cache.seconds['head']:.1f} s ({1e3 * per['head']:.3f} ms a pair), "
          f"verifier {cache.computed['verifier']:,} pairs in {cache.seconds['verifier']:.1f} s ({1e3 * per['verifier']:.3f} ms a pair)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--sets", default="dev,validation")
    ap.add_argument("--variants", default="band:band,all:all,band:all,all:band,lazy")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "research/results/dedup_stack.json")
    args = ap.parse_args()
    set_threads(args.threads)
    env = research_environment()
    engine = Engine(load_encoder(args.model))
    if engine.verdict.kind != "head+verifier":
        raise SystemExit(f"the model's verdict stage is {engine.verdict.kind!r}: these variants need head+verifier")
    res = {"environment": env, "k": args.k, "linkage": "complete", "sets": {}}
    start = time.perf_counter()
    for name in args.sets.split(","):
        res["sets"][name] = evaluate(engine, name, args.variants.split(","), args.k)
        res["seconds"] = round(time.perf_counter() - start, 1)
        args.out.write_text(json.dumps(res, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
