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
    ap.add_argument("--fit", choices=["train", "val"], default="train",
                    help="train: the encoder's training pairs train the head, its validation pairs choose the threshold; "
                         "val: the validation pairs (clusters the encoder never saw) train it, 5 folds by cluster choose the threshold")
    ap.add_argument("--calib", choices=["val", "both"], default="val",
                    help="val: the threshold from the encoder's validation split; both: from it and 5%% of the training "
                         "split's pairs held out from the head (balanced accuracy over both)")
    ap.add_argument("--wordnet", type=int, default=0, help="add this many WordNet one-word pairs from training questions")
    ap.add_argument("--wordnet-weight", type=int, default=1, help="repeat the WordNet pairs this many times")
    ap.add_argument("--unknown-share", type=float, default=1.0, help="share of the cached unknown-word pairs to use")
    for f, v in asdict(HeadConfig()).items():
        kind = (lambda x: x.lower() in ("1", "true", "yes")) if isinstance(v, bool) else type(v)
        ap.add_argument("--" + f.replace("_", "-"), type=kind, default=v)
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
    extra_ps = None
    if config.unknown_pairs:
        ucache = work / f"unknown_{config.unknown_pairs}_{config.seed}.npz"
        if ucache.exists():
            c = np.load(ucache)
            extra_vec, extra = c["vec"], PairSet(c["a"], c["b"], c["text"], c["label"])
        else:
            extra_vec, extra = unknown_word_pairs(feat, enc, train_all.questions, tr, config.unknown_pairs, config.seed)
            np.savez(ucache, vec=extra_vec, a=extra.a, b=extra.b, text=extra.text, label=extra.label)
        off = len(vectors)
        vectors = np.concatenate([vectors, extra_vec])
        keep = np.random.default_rng(1).random(len(extra.label)) < args.unknown_share
        extra_ps = PairSet(extra.a[keep] + off, extra.b[keep] + off, extra.text[keep], extra.label[keep])

    def join(x: PairSet, y: PairSet | None) -> PairSet:
        return x if y is None else PairSet(np.r_[x.a, y.a], np.r_[x.b, y.b], np.r_[x.text, y.text], np.r_[x.label, y.label])

    if args.wordnet:
        wcache = work / f"wordnet_{args.wordnet}.npz"
        if wcache.exists():
            c = np.load(wcache)
            w_vec, w_ps = c["vec"], PairSet(c["a"], c["b"], c["text"], c["label"])
        else:
            import os

            from dupfinder.model.files import load_numpy_weights
            from dupfinder.train.wordnet_pairs import wordnet_pairs

            t = time.time()
            triples = wordnet_pairs((train_all.questions[q] for q in tr_q), lambda x: tokenize(x, enc.text_config), enc.vocab,
                                    int(enc.manifest.get("vocabulary_extension", {}).get("trained_words", len(enc.vocab))),
                                    args.wordnet, load_numpy_weights(enc.files)["embed.weight"].astype(np.float32), seed=config.seed,
                                    data_dir=os.environ.get("NLTK_DATA"))
            texts = [x for a, b, _ in triples for x in (a, b)]
            w_vec = enc.encode(texts)
            qt = feat.questions(texts)
            w_ps = PairSet(np.arange(0, len(texts), 2), np.arange(1, len(texts), 2), feat.pairs(qt[0::2], qt[1::2]),
                           np.array([l for _, _, l in triples], np.float32))
            np.savez(wcache, vec=w_vec, a=w_ps.a, b=w_ps.b, text=w_ps.text, label=w_ps.label)
            print(f"{len(triples):,} WordNet pairs ({int(w_ps.label.sum()):,} duplicates) in {time.time() - t:.0f} s", flush=True)
        off = len(vectors)
        vectors = np.concatenate([vectors, w_vec])
        w_ps = PairSet(w_ps.a + off, w_ps.b + off, w_ps.text, w_ps.label)
        for _ in range(args.wordnet_weight):
            extra_ps = join(extra_ps, w_ps) if extra_ps is not None else w_ps

    if args.fit == "train":
        hold = np.random.default_rng(2).random(len(ps_tr.label)) < (0.05 if args.calib == "both" else 0.0)
        fit = PairSet(ps_tr.a[~hold], ps_tr.b[~hold], ps_tr.text[~hold], ps_tr.label[~hold])
        weights, mean, std, history = train_head(vectors, join(fit, extra_ps), ps_va, config)
        head = PairHead(weights, mean, std, feat, 0.5)
        if hold.any():
            ps_va = join(ps_va, PairSet(ps_tr.a[hold], ps_tr.b[hold], ps_tr.text[hold], ps_tr.label[hold]))
        p_va = head.probabilities(vec_t[ps_va.a], vec_t[ps_va.b], ps_va.text)
    else:
        from dupfinder.io import duplicate_clusters

        clusters = duplicate_clusters(train_all)
        fold = np.array([min(clusters[a], clusters[b]) for a, b in zip(va.qid1.tolist(), va.qid2.tolist())]) % 5
        p_va = np.zeros(len(va))
        for k in range(5):
            idx, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            part = PairSet(ps_va.a[idx], ps_va.b[idx], ps_va.text[idx], ps_va.label[idx])
            hold = PairSet(ps_va.a[held], ps_va.b[held], ps_va.text[held], ps_va.label[held])
            w, m, sd, _ = train_head(vectors, join(part, extra_ps), hold, config, log=lambda x: None)
            p_va[held] = PairHead(w, m, sd, feat, 0.5).probabilities(vec_t[hold.a], vec_t[hold.b], hold.text)
            print(f"fold {k}: {len(held):,} held-out pairs", flush=True)
        weights, mean, std, history = train_head(vectors, join(ps_va, extra_ps), ps_va, config)
        head = PairHead(weights, mean, std, feat, 0.5)
    cal = advise(p_va, ps_va.label, balanced=True)
    tau = cal["best_accuracy"]["threshold"]
    p_dev = head.probabilities(vec_d[ps_dev.a], vec_d[ps_dev.b], ps_dev.text)
    cos_dev = (vec_d[ps_dev.a] * vec_d[ps_dev.b]).sum(1)
    mask = unseen_mask(dev, TRAIN)
    res = {
        "config": asdict(config), "fit": args.fit, "calib": args.calib, "unknown_share": args.unknown_share, "threshold": tau, "history": history,
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
        from dupfinder.train.head import cosine_floor

        floor = cosine_floor((vec_t[ps_va.a] * vec_t[ps_va.b]).sum(1), p_va >= tau)
        rec = save_head(args.save, arrays, tau, {"cosine_floor": floor, "fit": args.fit, "calib": args.calib, "config": asdict(config), "validation": {k: cal["best_accuracy"][k] for k in ("pairs", "accuracy", "balanced_accuracy", "precision", "recall", "roc_auc")}})
        print("saved", rec["sha256"][:12])


if __name__ == "__main__":
    main()
