"""Train and measure the verdict head over the shipped encoder's cached vectors (research loop).

    python research/verdict_head.py --work /tmp/verdict-work [--epochs 6] [--unknown-pairs 20000] [--save MODEL_DIR]

Vectors of every training and dev question are cached in --work by research/verdict_encode (the
torch path, once); text features are cached there too. Trains on the encoder's training split,
chooses the threshold on its validation split (balanced accuracy, like tau), and reports dev at
that threshold. Dev never trains or chooses anything.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dupfinder.evaluation.calibrate import advise, metrics_at
from dupfinder.evaluation.pairs import unseen_mask
from dupfinder.io import load_pairs
from dupfinder.model.encoder import load_model
from dupfinder.text import tokenize
from dupfinder.train.head import HeadConfig, PairSet, encoder_split, featurizer_for, pair_set, save_head, train_head, unknown_word_pairs
from dupfinder.verdict.head import PairHead, head_arrays

TRAIN = "/work/shared/data/quora/train.csv.gz"
DEV = "/work/shared/data/quora/dev.csv"


def cached(work: Path, name: str, encoder, pairs):
    qids = np.load(work / f"{name}_qids.npy")
    vec = np.load(work / f"{name}_vec.npy").astype(np.float32)
    return vec, {q: i for i, q in enumerate(qids.tolist())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/verdict-work")
    ap.add_argument("--model", default=None)
    ap.add_argument("--save", default=None, help="write verdict.npz and the manifest entry into this model directory")
    ap.add_argument("--out", default=None, help="results JSON")
    for f, v in asdict(HeadConfig()).items():
        ap.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    args = ap.parse_args()
    config = HeadConfig(**{f: getattr(args, f) for f in asdict(HeadConfig())})
    work = Path(args.work)
    t0 = time.time()
    enc = load_model(args.model, backend="torch")
    train_all = load_pairs(TRAIN)
    dev = load_pairs(DEV)
    tr_idx, va_idx = encoder_split(train_all, enc.manifest)
    tr, va = train_all.subset(tr_idx), train_all.subset(va_idx)
    print(f"train {len(tr):,} val {len(va):,} dev {len(dev):,}", flush=True)
    tr_q = np.unique(np.r_[tr.qid1, tr.qid2]).tolist()
    feat = featurizer_for(enc, (tokenize(train_all.questions[q], enc.text_config) for q in tr_q))
    vec_t, row_t = cached(work, "train", enc, train_all)
    vec_d, row_d = cached(work, "dev", enc, dev)
    cache = work / "text_features.npz"
    if cache.exists():
        c = np.load(cache)
        ps_tr = PairSet(*(c[f"tr_{k}"] for k in "abtl"))
        ps_va = PairSet(*(c[f"va_{k}"] for k in "abtl"))
        ps_dev = PairSet(*(c[f"dev_{k}"] for k in "abtl"))
    else:
        ps_tr = pair_set(feat, train_all.questions, row_t, tr)
        ps_va = pair_set(feat, train_all.questions, row_t, va)
        ps_dev = pair_set(feat, dev.questions, row_d, dev)
        np.savez(cache, **{f"{n}_{k}": getattr(p, f) for n, p in (("tr", ps_tr), ("va", ps_va), ("dev", ps_dev))
                            for k, f in zip("abtl", ("a", "b", "text", "label"))})
    vectors = vec_t
    if config.unknown_pairs:
        extra_vec, extra = unknown_word_pairs(feat, enc, train_all.questions, tr, config.unknown_pairs, config.seed)
        off = len(vectors)
        vectors = np.concatenate([vectors, extra_vec])
        ps_tr = PairSet(np.r_[ps_tr.a, extra.a + off], np.r_[ps_tr.b, extra.b + off], np.r_[ps_tr.text, extra.text], np.r_[ps_tr.label, extra.label])
    weights, mean, std, history = train_head(vectors, ps_tr, ps_va, config)
    head = PairHead(weights, mean, std, feat, 0.5)
    p_va = head.probabilities(vec_t[ps_va.a], vec_t[ps_va.b], ps_va.text)
    cal = advise(p_va, ps_va.label, balanced=True)
    tau = cal["best_accuracy"]["threshold"]
    p_dev = head.probabilities(vec_d[ps_dev.a], vec_d[ps_dev.b], ps_dev.text)
    cos_dev = (vec_d[ps_dev.a] * vec_d[ps_dev.b]).sum(1)
    mask = unseen_mask(dev, TRAIN)
    res = {
        "config": asdict(config), "threshold": tau, "history": history,
        "validation": cal["best_accuracy"],
        "dev": metrics_at(p_dev, ps_dev.label, tau),
        "dev_unseen": metrics_at(p_dev[mask], ps_dev.label[mask], tau),
        "dev_best_threshold_accuracy": advise(p_dev, ps_dev.label, balanced=False)["best_accuracy"]["accuracy"],
        "dev_cosine": metrics_at(cos_dev, ps_dev.label, enc.threshold),
        "seconds": round(time.time() - t0, 1),
    }
    named = [("How old are you?", "What is your age?", 1), ("Where are you from?", "Where are you going?", 0),
             ("Can you see me?", "Are you seeing me?", 1), ("When is the game?", "What time is the game?", 1),
             ("Where are thou?", "Where are you?", 1), ("What is your age?", "Where are you from?", 0),
             ("How do I install Zorblax?", "How do I install Quibbit?", 0),
             ("How do I reset my password?", "How do I reset my router?", 0),
             ("Why is my iPhone battery draining?", "Why is my Android battery draining?", 0)]
    va_, vb_ = enc.encode([a for a, _, _ in named]), enc.encode([b for _, b, _ in named])
    pn = head.score(va_, vb_, feat.questions([a for a, _, _ in named]), feat.questions([b for _, b, _ in named]))
    res["named"] = [{"q1": a, "q2": b, "want": y, "p": round(float(p), 4), "right": bool((p >= tau) == y)} for (a, b, y), p in zip(named, pn)]
    for k in ("dev", "dev_unseen", "dev_cosine"):
        m = res[k]
        print(f"{k}: acc {m['accuracy']:.4f} P {m['precision']:.4f} R {m['recall']:.4f} AUC {m['roc_auc']:.4f}")
    print(f"tau {tau:.4f}; dev acc at best dev threshold {res['dev_best_threshold_accuracy']:.4f}")
    print("named right:", sum(r["right"] for r in res["named"]), "/", len(named), [(r["q2"][:20], r["p"]) for r in res["named"]])
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    if args.save:
        arrays = head_arrays(weights, mean, std, feat.idf, feat.idf_unknown)
        rec = save_head(args.save, arrays, tau, {"config": asdict(config), "validation": {k: cal["best_accuracy"][k] for k in ("pairs", "accuracy", "balanced_accuracy", "precision", "recall", "roc_auc")}})
        print("saved", rec["sha256"][:12])


if __name__ == "__main__":
    main()
