"""Which clustering rule should dedup use over the verdict stage's pair scores? The shipped guard (a
star around each canonical) over-merges within one topic. This compares linkage rules on the same
candidate edges and the same pair verdicts (head + verifier, cached per pair), on dev's questions
and on the encoder's validation split of the training file, with pairwise P/R/F1 against gold
clusters, the number of clusters, the largest, and the clustering time.

    python research/dedup_linkage.py [--model DIR] [--sets dev,validation] [--out research/results/dedup_linkage.json]

Rules (edges merged strongest first; a merge of clusters A and B needs):
  guard        every member of the smaller one a duplicate of the larger one's canonical (shipped)
  complete     every cross pair a duplicate (A + B is a clique of verdict-duplicates)
  frac-X       at least X of the cross pairs duplicates
  average      the mean cross pair probability at or above the threshold
  join-T       a pair at the threshold, but joining a cluster of 2 or more needs every cross pair >= T
  cap-C        guard, and no cluster above C questions
  mutual       the same rules over mutual-kNN edges only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from bench_dedup import labeled_metrics, pairwise_metrics  # noqa: E402

from dupfinder.dedup import cluster_edges, edges_from_knn, encode_distinct  # noqa: E402
from dupfinder.engine import Engine, load_encoder  # noqa: E402
from dupfinder.io import Pairs as LabeledPairs, duplicate_clusters, load_pairs  # noqa: E402
from dupfinder.knn import UnionFind, exact_search  # noqa: E402
from dupfinder.train.head import encoder_split  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"


class CosineOnly:
    """A stand-in verdict stage for the cosine rule: every pair is scored by its cosine."""

    cosine_floor = 0.0
    featurizer = None

    def score(self, u, v, a, b):
        return np.einsum("ij,ij->i", u, v)


class Pairs:
    """Verdict scores of any pairs of distinct questions, each pair scored once."""

    def __init__(self, head, enc, a, b, p):
        self.head, self.enc = head, enc
        self.floor = head.cosine_floor
        self.cache = dict(zip((a * len(enc.x) + b).tolist(), p.tolist()))
        self.read = {}
        self.scored = 0

    def q(self, rows):
        out = []
        for r in rows:
            if r not in self.read:
                self.read[r] = self.head.featurizer.question(self.enc.texts[r]) if self.head.featurizer else None
            out.append(self.read[r])
        return out

    def matrix(self, A: list[int], B: list[int]) -> np.ndarray:
        """(|A|, |B|) verdict scores; 0 below the cosine floor."""
        x = self.enc.x
        cos = x[A] @ x[B].T  # (|A|, |B|)
        out = np.zeros(cos.shape, np.float64)
        n = len(x)
        todo = []
        for (i, j) in zip(*np.nonzero(cos >= self.floor)):
            a, b = A[i], B[j]
            key = min(a, b) * n + max(a, b)
            v = self.cache.get(key)
            if v is None:
                todo.append((i, j, min(a, b), max(a, b), key))
            else:
                out[i, j] = v
        if todo:
            ua = [t[2] for t in todo]
            ub = [t[3] for t in todo]
            p = self.head.score(x[ua], x[ub], self.q(ua), self.q(ub))
            self.scored += len(todo)
            for (i, j, _, _, key), v in zip(todo, p.tolist()):
                out[i, j] = v
                self.cache[key] = v
        return out


def link(n, a, b, p, thr, pairs: Pairs, rule: str, param: float = 0.0) -> np.ndarray:
    """Strongest edge first, merge if `rule` accepts the two clusters; the root of each vector."""
    keep = p >= thr
    a, b, p = a[keep], b[keep], p[keep]
    order = np.lexsort((b, a, -p))
    uf = UnionFind(n)
    find = uf.find
    members: dict[int, list[int]] = {}
    canon = list(range(n))
    refused: set = set()
    for i, j in zip(a[order].tolist(), b[order].tolist()):
        ri, rj = find(i), find(j)
        if ri == rj:
            continue
        A, B = members.get(ri, [ri]), members.get(rj, [rj])
        key = (ri, rj, len(A), len(B))
        if key in refused:
            continue
        if len(B) > len(A) or (len(B) == len(A) and canon[rj] < canon[ri]):
            ri, rj, A, B = rj, ri, B, A
        if rule == "cap":  # the guard, and no cluster above param questions
            if len(A) + len(B) > param or not (pairs.matrix(B, [canon[ri]]) >= thr).all():
                refused.add(key)
                continue
        elif len(A) * len(B) > 1:
            m = pairs.matrix(A, B)
            if rule == "complete":
                ok = (m >= thr).all()
            elif rule == "frac":
                ok = (m >= thr).mean() >= param
            elif rule == "average":
                ok = m.mean() >= thr
            elif rule == "join":
                ok = (m >= param).all()
            else:
                raise ValueError(rule)
            if not ok:
                refused.add(key)
                continue
        uf.parent[rj] = ri
        members[ri] = A + B
        members.pop(rj, None)
    return np.fromiter((find(i) for i in range(n)), np.int64, n)


def prepare(engine, texts, k=16):
    head = engine.verdict.head
    t0 = time.perf_counter()
    enc = encode_distinct(engine.encoder, texts, np.ones(len(texts), bool))
    t1 = time.perf_counter()
    scores, ids = exact_search(enc.x, enc.x, k + 1, 8192)
    a, b, s = edges_from_knn(scores, ids, head.cosine_floor)
    t2 = time.perf_counter()
    qt = head.featurizer.questions(enc.texts)
    p = head.score(enc.x[a], enc.x[b], [qt[i] for i in a.tolist()], [qt[i] for i in b.tolist()])
    t3 = time.perf_counter()
    # mutual: each end among the other's k nearest
    n = len(enc.x)
    near = set((np.arange(n)[:, None] * n + ids).ravel().tolist())
    mutual = np.fromiter(((x * n + y) in near and (y * n + x) in near for x, y in zip(a.tolist(), b.tolist())), bool, len(a))
    return enc, a, b, s, p.astype(np.float64), mutual, {"encode": t1 - t0, "search": t2 - t1, "verdict": t3 - t2}


def joined(dev: LabeledPairs, train: LabeledPairs) -> LabeledPairs:
    """Dev's pairs and the training file's in one set: qids name the same question across files, so
    the connected components of both files' duplicate pairs are the dataset's duplicate clusters."""
    return LabeledPairs(np.concatenate([dev.qid1, train.qid1]), np.concatenate([dev.qid2, train.qid2]),
                        np.concatenate([dev.label, train.label]), {**train.questions, **dev.questions}, dev.report)


def load_set(name: str, engine) -> tuple[list[str], np.ndarray, tuple]:
    """Texts of a set's questions ("dev"; "dev-all", dev's questions with gold clusters from both files'
    labels; or the encoder's validation split of the training file), the gold cluster of each, and the set's labeled pairs (row1, row2, label)."""
    if name in ("dev", "dev-all"):
        pairs = load_pairs(DATA / "dev.csv")
        gold_of = duplicate_clusters(pairs if name == "dev" else joined(pairs, load_pairs(DATA / "train.csv.gz")))
        qids = sorted(pairs.questions)
        texts = [pairs.questions[q] for q in qids]
    else:
        train = load_pairs(DATA / "train.csv.gz")
        _, va_idx = encoder_split(train, engine.encoder.manifest)
        pairs = train.subset(va_idx)
        gold_of = duplicate_clusters(train)
        qids = sorted(set(pairs.qid1.tolist()) | set(pairs.qid2.tolist()))
        texts = [train.questions[q] for q in qids]
    pos = {q: i for i, q in enumerate(qids)}
    labeled = (np.array([pos[q] for q in pairs.qid1.tolist()]), np.array([pos[q] for q in pairs.qid2.tolist()]), np.asarray(pairs.label))
    return texts, np.array([gold_of[q] for q in qids]), labeled


def evaluate(engine, texts, gold, label, variants, labeled):
    head = engine.verdict.head
    thr = head.threshold
    enc, a, b, s, p, mutual, prep = prepare(engine, texts)
    print(f"\n## {label}: {len(texts):,} questions, {len(enc.x):,} distinct, {len(a):,} candidate edges "
          f"({mutual.sum():,} mutual), threshold {thr:.4f}; prepare {', '.join(f'{k} {v:.1f} s' for k, v in prep.items())}", flush=True)
    out = {"questions": len(texts), "edges": len(a), "mutual_edges": int(mutual.sum()), "threshold": thr,
           "prepare_seconds": {k: round(v, 1) for k, v in prep.items()}, "rules": {}}
    x = enc.x

    def qt_judge():
        read = {}

        def judge(members, canonical):
            near = x[members] @ x[canonical] >= head.cosine_floor
            if not near.all():
                return np.zeros(len(members), np.float32)
            qs = []
            for r in members.tolist() + [canonical]:
                if r not in read:
                    read[r] = head.featurizer.question(enc.texts[r])
                qs.append(read[r])
            return head.score(x[members], x[[canonical] * len(members)], qs[:-1], [qs[-1]] * len(members))
        return judge

    for name in variants:
        rule, _, param = name.partition("-")
        mut = rule.startswith("mutual")
        if mut:
            rule = rule[len("mutual"):] or "guard"
            rule = rule.lstrip("_")
        sel = mutual if mut else np.ones(len(a), bool)
        pairs = Pairs(head, enc, a, b, p)
        t0 = time.perf_counter()
        if rule == "guard":
            c = cluster_edges(x, a[sel], b[sel], p[sel].astype(np.float32), thr, True, enc.weight, enc.first_row, qt_judge())
            root = c.canonical
        elif rule == "cosine":  # the cosine rule with the guard, for reference
            c = cluster_edges(x, a, b, s, engine.encoder.threshold, True, enc.weight, enc.first_row)
            root = c.canonical
        elif rule == "cosinecomplete":  # the cosine rule, complete linkage
            root = link(len(x), a, b, s.astype(np.float64), engine.encoder.threshold, Pairs(CosineOnly(), enc, a, b, s), "complete")
        else:
            root = link(len(x), a[sel], b[sel], p[sel], thr, pairs, rule, float(param or 0))
        seconds = time.perf_counter() - t0
        pred = root[enc.group]
        m = pairwise_metrics(pred, gold)
        lm = labeled_metrics(dict(enumerate(pred.tolist())), *labeled)
        roots, sizes = np.unique(root, return_counts=True)
        big = np.flatnonzero(root == roots[sizes.argmax()])[:8]
        row = {"precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "clusters": len(sizes),
               "multi": int((sizes > 1).sum()), "largest": int(sizes.max()), "seconds": round(seconds, 2),
               "extra_pairs_scored": pairs.scored, "pred_pairs": m["pred_pairs"], "gold_pairs": m["gold_pairs"],
               "labeled": lm, "largest_sample": [enc.texts[i] for i in big.tolist()]}
        out["rules"][name] = row
        print(f"{name:<16} P {m['precision']:.4f} R {m['recall']:.4f} F1 {m['f1']:.4f}  clusters {len(sizes):,} "
              f"(multi {row['multi']:,}) largest {row['largest']}  {seconds:.1f} s  (+{pairs.scored:,} pairs scored)  "
              f"labeled P {lm['precision']:.4f} R {lm['recall']:.4f} F1 {lm['f1']:.4f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--sets", default="dev,validation")
    ap.add_argument("--rules", default="cosine,guard,complete,frac-0.75,frac-0.5,average,join-0.7,join-0.85,cap-8,mutual,mutual_complete")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    engine = Engine(load_encoder(args.model))
    variants = args.rules.split(",")
    res = {}
    for name in args.sets.split(","):
        texts, gold, labeled = load_set(name, engine)
        res[name] = evaluate(engine, texts, gold, name, variants, labeled)
        if args.out:
            args.out.write_text(json.dumps(res, indent=2, default=float))


if __name__ == "__main__":
    main()
