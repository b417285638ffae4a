"""How much of dedup's low pairwise precision on dev is the gold clusters' blind spot rather than the verdict?

Gold clusters are the connected components of dev's duplicate-labeled pairs, so two questions that
dev never paired sit in different gold clusters even when they are real duplicates, and a predicted
same-cluster pair of them counts as a false positive. This measures that, on dev's 19,047
questions, with the shipped dedup (k 16 candidate edges at the head's cosine floor, complete
linkage, head + verifier verdicts as the cascade gives them, threshold 0.5303), built exactly as
`research/dedup_stack.py` builds its `band:band` variant:

  1. the predicted same-cluster pairs, split into (a) both in one gold cluster, (b) a pair dev labels
     as non-duplicate (directly), (c) the rest: different gold clusters, never paired by dev;
  2. oracles, with the same candidate edges and complete linkage:
       oracle            every pair dev labels scores its label (1.0 / 0.0), every other pair keeps
                         the shipped verdict (the ceiling of a perfect verdict on labeled pairs);
       labeled-only      as oracle, but a pair dev never labels scores 0.0 (only labeled
                         duplicates may join: the metric's upper end for complete linkage);
     each with the shipped cosine floor (a cross pair below it refuses the merge without a verdict)
     and with the floor lifted for labeled pairs (`+nofloor`: a labeled pair always gets its label);
     and `labeled-only single`, plain union-find over the candidate edges dev labels duplicate;
  3. 30 random type-(c) pairs (seed 0) with judgments made by reading them (JUDGED below):
     is it a real duplicate (the same question, one answer serves both)?

Measured (research/results/dedup_ceiling.json, one thread): of the shipped run's 21,674 predicted
pairs, 6,009 (27.7%) share a gold cluster, 736 (3.4%) are labeled non-duplicates and 14,929 (68.9%)
were never paired; in 30 of those by eye, 21 are real duplicates, 4 borderline, 5 not. The oracle
reaches P/R/F1 0.358/0.909/0.514 (0.514 without the floor too), labeled-only 0.996/0.575/0.729
(cliques of at most 3), labeled-only single linkage 0.989/0.839/0.908.

    python research/dedup_ceiling.py [--model DIR] [--k 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "research"))
from common import set_threads  # noqa: E402
from dedup_linkage import DATA, labeled_metrics, pairwise_metrics  # noqa: E402
from dedup_stack import PairCache, Rule, load_set, research_environment  # noqa: E402

from dupfinder.dedup import DedupConfig, encode_distinct, neighbour_edges  # noqa: E402
from dupfinder.dedup_linkage import cluster  # noqa: E402
from dupfinder.engine import Engine, load_encoder  # noqa: E402
from dupfinder.io import load_pairs  # noqa: E402

SAMPLE, SEED = 30, 0

# Judgments of the 30 sampled type-(c) pairs (qid1 < qid2) -> (judgment, note), made by reading both
# questions: "yes" when one answer serves both, "no" when not, "borderline" when a narrower or
# differently worded ask might want a different answer.
JUDGED: dict[tuple[int, int], tuple[str, str]] = {
    (2605, 42549): ("yes", "purpose of life"),
    (10330, 11263): ("borderline", "lose weight / lose 10 kilos: a specific amount"),
    (36461, 98110): ("no", "who viewed my profile / who viewed my videos"),
    (42942, 123700): ("yes", "most important thing(s) in life"),
    (33123, 46355): ("borderline", "reasons to join Quora / why follow Quora"),
    (19116, 38958): ("yes", "partner cheating"),
    (163206, 177343): ("no", "money into Swiss banks / the Swiss challenge"),
    (21768, 71121): ("yes", "communication skills"),
    (65824, 288719): ("yes", "electoral vs popular vote"),
    (20201, 51617): ("yes", "make money online"),
    (7332, 29115): ("yes", "first programming language"),
    (9597, 13324): ("yes", "how Trump won the election"),
    (91320, 115375): ("yes", "aim of life"),
    (10958, 28236): ("yes", "why Quora when there is Google"),
    (11263, 531109): ("no", "lose 10 kilos / how to count calories"),
    (53415, 71824): ("yes", "New Year's resolutions 2017"),
    (21713, 42108): ("borderline", "Quora instead of Wikipedia / instead of Google"),
    (441, 298830): ("yes", "earn from Quora"),
    (12131, 26095): ("yes", "purpose of your life"),
    (3419, 28462): ("yes", "getting a green card"),
    (8461, 39445): ("yes", "speaking English fluently"),
    (69583, 72707): ("yes", "best / favourite movie"),
    (24390, 458971): ("yes", "effects of the 500/1000 rupee note withdrawal"),
    (20207, 81700): ("yes", "best animated movies"),
    (3260, 3261): ("yes", "website / blog traffic"),
    (45494, 331207): ("no", "facts about Pokemon GO / is it the best game"),
    (38, 4407): ("yes", "questions Google could answer"),
    (12062, 104901): ("yes", "learning C"),
    (5052, 82816): ("borderline", "two QuickBooks support numbers (spam)"),
    (50488, 90614): ("no", "the same template for two different dog breeds"),
}


def predicted_pairs(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of rows in one predicted cluster."""
    order = np.argsort(pred, kind="stable")
    _, start, counts = np.unique(pred[order], return_index=True, return_counts=True)
    us, vs = [], []
    for s, m in zip(start.tolist(), counts.tolist()):
        if m < 2:
            continue
        rows = np.sort(order[s : s + m])
        i, j = np.triu_indices(m, 1)
        us.append(rows[i])
        vs.append(rows[j])
    return np.concatenate(us), np.concatenate(vs)


def run(name: str, enc, a, b, s, thr, floor, scorer, gold, labeled, linkage="complete") -> tuple[dict, np.ndarray]:
    t0 = time.perf_counter()
    c = cluster(enc.x, a, b, np.asarray(s, np.float32), thr, linkage, enc.weight, enc.first_row,
                scorer if linkage == "complete" else None, floor)
    pred = c.canonical[enc.group]
    m = pairwise_metrics(pred, gold)
    lm = labeled_metrics(dict(enumerate(pred.tolist())), *labeled)
    sizes = np.unique(c.canonical, return_counts=True)[1]
    row = {"precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "pred_pairs": m["pred_pairs"],
           "true_pairs": m["true_pairs"], "gold_pairs": m["gold_pairs"], "clusters": len(sizes),
           "largest": int(sizes.max()), "merges_refused": c.merges_refused, "labeled": lm,
           "seconds": round(time.perf_counter() - t0, 2)}
    print(f"{name:<28} P {m['precision']:.4f} R {m['recall']:.4f} F1 {m['f1']:.4f}  pred pairs {m['pred_pairs']:,} "
          f"(true {m['true_pairs']:,})  clusters {len(sizes):,} largest {row['largest']}  "
          f"labeled P {lm['precision']:.4f} R {lm['recall']:.4f}", flush=True)
    return row, pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "research/results/dedup_ceiling.json")
    args = ap.parse_args()
    set_threads(args.threads)
    env = research_environment()
    start = time.perf_counter()
    engine = Engine(load_encoder(args.model))
    if engine.verdict.kind != "head+verifier":
        raise SystemExit(f"the model's verdict stage is {engine.verdict.kind!r}: the shipped run needs head+verifier")
    cascade = engine.verdict.head
    thr, floor = cascade.threshold, cascade.cosine_floor
    texts, gold, labeled = load_set("dev", engine)
    qids = sorted(load_pairs(DATA / "dev.csv").questions)  # the rows' qids, as load_set orders them
    enc = encode_distinct(engine.encoder, texts, np.ones(len(texts), bool))
    a, b, _ = neighbour_edges(enc.x, floor, DedupConfig(threshold=floor, k=args.k))
    n = len(enc.x)
    print(f"\ndev: {len(texts):,} questions, {n:,} distinct, {len(a):,} candidate edges; threshold {thr:.4f}, "
          f"cosine floor {floor:.4f}", flush=True)

    # labels of the labeled pairs, by row pair and by distinct-question pair
    l1, l2, lab = labeled
    row_label: dict[tuple[int, int], set] = {}
    for u, v, y in zip(l1.tolist(), l2.tolist(), lab.tolist()):
        row_label.setdefault((min(u, v), max(u, v)), set()).add(int(y))
    key_label: dict[int, set] = {}
    same_text = 0
    for (u, v), ys in row_label.items():
        gu, gv = int(enc.group[u]), int(enc.group[v])
        if gu == gv:
            same_text += 1
            continue
        key_label.setdefault(min(gu, gv) * n + max(gu, gv), set()).update(ys)
    conflicts = sum(len(ys) > 1 for ys in key_label.values())
    # a distinct pair with both labels (through identical texts) counts as non-duplicate: the stricter reading
    oracle_of = {k: float(min(ys)) for k, ys in key_label.items()}
    labeled_info = {"labeled_rows": int(len(lab)), "labeled_row_pairs": len(row_label), "labeled_duplicates": int(lab.sum()),
                    "labeled_distinct_pairs": len(key_label), "labeled_pairs_of_one_text": same_text,
                    "distinct_pairs_with_both_labels": conflicts}
    print(labeled_info, flush=True)

    cache = PairCache(cascade, enc)
    shipped_edge = Rule(cache, False, set())(a, b)
    shipped = Rule(cache, False, set())
    keys_e = cache.keys(a, b)
    cos_e = np.einsum("ij,ij->i", enc.x[a], enc.x[b])

    def oracle_scorer(unlabeled: str, lift_floor: bool):
        """Labeled pairs score their label; the others the shipped verdict (`shipped`) or 0 (`refuse`).
        With lift_floor the linkage gets no cosine floor, and the floor is applied here to unlabeled pairs only."""

        def score(u, v):
            u, v = np.asarray(u, np.int64), np.asarray(v, np.int64)
            keys = cache.keys(u, v).tolist()
            out = np.zeros(len(keys), np.float64)
            lab_mask = np.fromiter((k in oracle_of for k in keys), bool, len(keys))
            out[lab_mask] = [oracle_of[k] for k, m in zip(keys, lab_mask.tolist()) if m]
            rest = ~lab_mask
            if unlabeled == "shipped":
                if lift_floor:
                    rest &= np.einsum("ij,ij->i", enc.x[u], enc.x[v]) >= floor
                idx = np.flatnonzero(rest)
                if len(idx):
                    out[idx] = shipped(u[idx], v[idx])
            return out

        return score

    res = {"environment": env, "k": args.k, "linkage": "complete", "threshold": thr, "cosine_floor": floor,
           "questions": len(texts), "distinct": n, "edges": int(len(a)), "labels": labeled_info, "runs": {}}

    # --- 1. the shipped run and its predicted pairs by type
    res["runs"]["shipped"], pred = run("shipped", enc, a, b, shipped_edge, thr, floor, shipped, gold, labeled)
    pu, pv = predicted_pairs(pred)
    same_gold = gold[pu] == gold[pv]
    lab_of = [row_label.get((u, v)) for u, v in zip(pu.tolist(), pv.tolist())]
    labeled_dup = np.fromiter((ys is not None and 1 in ys for ys in lab_of), bool, len(pu))
    labeled_non = np.fromiter((ys is not None and 0 in ys for ys in lab_of), bool, len(pu))
    one_text = enc.group[pu] == enc.group[pv]
    ta, tb = same_gold, ~same_gold & labeled_non
    tc = ~same_gold & ~labeled_non
    total = len(pu)
    types = {
        "pred_pairs": total,
        "a_same_gold_cluster": {"count": int(ta.sum()), "share": float(ta.mean()),
                                "labeled_duplicate_directly": int((ta & labeled_dup).sum()),
                                "through_other_pairs_only": int((ta & ~labeled_dup & ~labeled_non).sum()),
                                "labeled_non_duplicate_but_same_gold_cluster": int((ta & labeled_non).sum())},
        "b_labeled_non_duplicate": {"count": int(tb.sum()), "share": float(tb.mean())},
        "c_never_paired_different_gold": {"count": int(tc.sum()), "share": float(tc.mean()),
                                          "of_identical_text": int((tc & one_text).sum())},
    }
    # precision if every type-(c) pair were a real duplicate, and F1 with that precision (recall unchanged)
    rec = res["runs"]["shipped"]["recall"]
    p_c = (ta.sum() + tc.sum()) / total
    types["precision_if_every_c_pair_were_duplicate"] = float(p_c)
    types["f1_if_every_c_pair_were_duplicate"] = float(2 * p_c * rec / (p_c + rec))
    res["pred_pair_types"] = types
    print(json.dumps(types, indent=1), flush=True)

    # --- 2. oracles
    for unl in ("shipped", "refuse"):
        for lift in (False, True):
            name = ("oracle" if unl == "shipped" else "labeled-only") + ("+nofloor" if lift else "")
            sc = oracle_scorer(unl, lift)
            s = sc(a, b)
            res["runs"][name], _ = run(name, enc, a, b, s, thr, -2.0 if lift else floor, sc, gold, labeled)
    s = oracle_scorer("refuse", True)(a, b)
    res["runs"]["labeled-only single"], _ = run("labeled-only single", enc, a, b, s, thr, floor, None, gold, labeled, "single")
    edge_lab = np.fromiter((oracle_of.get(k, -1.0) for k in keys_e.tolist()), np.float64, len(a))
    res["edges_labeled"] = {"duplicate": int((edge_lab == 1).sum()), "non_duplicate": int((edge_lab == 0).sum()),
                            "unlabeled": int((edge_lab < 0).sum()),
                            "labeled_duplicates_among_candidate_edges_share": float((edge_lab == 1).sum() / max(
                                sum(v == 1.0 for v in oracle_of.values()), 1)),
                            "labeled_duplicate_pairs_below_cosine_floor": int(sum(
                                1 for k, v in oracle_of.items() if v == 1.0 and float(enc.x[k // n] @ enc.x[k % n]) < floor))}
    print(res["edges_labeled"], flush=True)
    del cos_e

    # --- 3. eye check of type-(c) pairs
    rng = np.random.default_rng(SEED)
    pick = rng.choice(np.flatnonzero(tc), size=min(SAMPLE, int(tc.sum())), replace=False)
    sample = []
    for i in pick.tolist():
        u, v = int(pu[i]), int(pv[i])
        q1, q2 = qids[u], qids[v]
        key = (min(q1, q2), max(q1, q2))
        j = JUDGED.get(key)
        sample.append({"qid1": key[0], "qid2": key[1], "q1": texts[u] if q1 == key[0] else texts[v],
                       "q2": texts[v] if q1 == key[0] else texts[u],
                       "verdict_score": float(shipped(np.array([enc.group[u]]), np.array([enc.group[v]]))[0])
                       if enc.group[u] != enc.group[v] else 1.0,
                       "judgment": None if j is None else j[0], "note": None if j is None else j[1]})
    judged = [r for r in sample if r["judgment"] is not None]
    counts = {j: sum(r["judgment"] == j for r in judged) for j in ("yes", "borderline", "no")}
    eye = {"seed": SEED, "sampled": len(sample), "judged": len(judged), **counts}
    if judged:
        # what precision would be if the sample's share of real duplicates held for every type-(c) pair
        na, nc = int(ta.sum()), int(tc.sum())
        for label, share in (("yes_only", counts["yes"] / len(judged)),
                             ("yes_and_borderline", (counts["yes"] + counts["borderline"]) / len(judged))):
            p_est = (na + share * nc) / total
            eye[f"precision_if_{label}_share_holds"] = p_est
            eye[f"f1_if_{label}_share_holds"] = 2 * p_est * rec / (p_est + rec)
    eye["pairs"] = sample
    res["eye_check"] = eye
    for r in sample:
        print(f"{r['qid1']:>7} {r['qid2']:>7} {r['verdict_score']:.3f} {r['judgment']}\n   {r['q1']}\n   {r['q2']}")
    print({k: v for k, v in res["eye_check"].items() if k != "pairs"})
    res["seconds"] = round(time.perf_counter() - start, 1)
    args.out.write_text(json.dumps(res, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
