"""The verifier's band: how much of the full stack (head and verifier on every pair) the cascade
keeps when the verifier reads only the pairs whose head probability is in a band, for several band
widths, on dev, with the model's stored stack and threshold (fitted by `dupfinder train-verifier` on
the calibration pairs: the encoder's validation split plus the head's held-out training pairs); each
band is chosen on those pairs as train-verifier chooses it, and dev only reads.

    python research/verifier_band.py --model DIR [--miss 0.001,0.002,0.005,0.01,0.02]

With two networks, the second reads only the pairs inside its step's band (the cascade's rows);
"stack, every pair" has both read every pair. Each band is also measured widened to the pairs one word apart (a single aligned substitution after
the rewording rule's canonical words), which the verifier then always reads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from common import environment  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"


def refit(cal_p, cal_l, dev_p, dev_l, y):
    """Dev scores and threshold of a stack refitted on the calibration pairs over fewer networks."""
    from dupfinder.evaluation.calibrate import advise
    from dupfinder.train.verifier import fit_stack
    from dupfinder.verdict.verifier import head_logit

    w = np.asarray(fit_stack(cal_p, cal_l, y))

    def score(p, logits):
        return 1 / (1 + np.exp(-(np.c_[head_logit(p), logits, np.ones(len(p))] @ w)))

    return score(dev_p, dev_l), advise(score(cal_p, cal_l), y, balanced=True)["best_accuracy"]["threshold"]


def main() -> None:
    from dupfinder.evaluation.calibrate import advise, metrics_at
    from dupfinder.evaluation.metrics import roc_auc
    from dupfinder.evaluation.pairs import unseen_mask
    from dupfinder.io import load_pairs
    from dupfinder.model.encoder import load_model
    from dupfinder.train.verifier import calibration_split, choose_band
    from dupfinder.verdict.head import load_encoder_head
    from dupfinder.verdict.rewording import one_word_apart
    from dupfinder.verdict.verifier import load_verifier

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--miss", default="0.001,0.002,0.005,0.01,0.02")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "verifier_band.json")
    args = ap.parse_args()
    enc = load_model(args.model, backend="numpy")
    record = enc.manifest["verdict"]["verifier"]
    head = load_encoder_head(enc)
    verifier = load_verifier(enc.path, record, enc.vocab, enc.text_config, enc._numpy.embed)
    train = load_pairs(DATA / "train.csv.gz")
    dev = load_pairs(DATA / "dev.csv")
    _, cal, _ = calibration_split(train, enc, record["config"]["calibration_holdout"])
    unseen = unseen_mask(dev, DATA / "train.csv.gz")

    def scores(ps):
        q = np.unique(np.r_[ps.qid1, ps.qid2])
        v = enc.encode([ps.questions[x] for x in q.tolist()])
        p = head.score(v[np.searchsorted(q, ps.qid1)], v[np.searchsorted(q, ps.qid2)], head.featurizer.questions(ps.texts(1)),
                       head.featurizer.questions(ps.texts(2)))
        t = time.perf_counter()
        a, b = [verifier.ids(x) for x in ps.texts(1)], [verifier.ids(x) for x in ps.texts(2)]
        logits = verifier.logits(a, b).reshape(len(a), -1)  # (n, networks)
        seconds = time.perf_counter() - t
        stepped = verifier.decide(np.asarray(p, np.float64), a, b)  # the later networks only inside their steps' bands
        return np.asarray(p, np.float64), logits.astype(np.float64), stepped, seconds

    def apart(ps):
        qa, qb = head.featurizer.questions(ps.texts(1)), head.featurizer.questions(ps.texts(2))
        return np.array([one_word_apart(a, b) for a, b in zip(qa, qb)])

    cal_p, cal_l, cal_step, _ = scores(cal)
    dev_p, dev_l, dev_step, seconds = scores(dev)
    n_nets = dev_l.shape[1]
    dev_apart = apart(dev)
    print(f"one word apart: {dev_apart.mean():.1%} of dev pairs ({dev.label[dev_apart].mean():.1%} duplicates)")
    y, dy = cal.label.astype(np.float64), dev.label
    cal_s, dev_s = verifier.combine(cal_p, cal_l), verifier.combine(dev_p, dev_l)
    threshold = float(enc.manifest["verdict"]["threshold"])
    out = {"environment": environment(), "model": args.model, "stack": verifier.stack, "fill": verifier.fill, "threshold": threshold,
           "verifier_pairs_per_second": round(len(dy) / seconds), "rows": []}

    def row(name, s, t, in_band=1.0):
        m, u = metrics_at(s, dy, t), metrics_at(s[unseen], dy[unseen], t)
        r = {"rule": name, "threshold": t, "in_band": round(float(in_band), 4), "accuracy": m["accuracy"], "precision": m["precision"],
             "recall": m["recall"], "roc_auc": m["roc_auc"], "unseen_accuracy": u["accuracy"], "unseen_roc_auc": u["roc_auc"]}
        out["rows"].append(r)
        print(f"{name:<22} thr {t:.4f} band {in_band:.3f} | acc {m['accuracy']:.4f} P {m['precision']:.4f} R {m['recall']:.4f} "
              f"AUC {m['roc_auc']:.4f} | unseen acc {u['accuracy']:.4f} AUC {u['roc_auc']:.4f}")

    row("head alone", dev_p, advise(cal_p, y, balanced=True)["best_accuracy"]["threshold"], 0.0)
    for k in range(n_nets):
        row(f"network {k + 1} alone", dev_l[:, k], advise(cal_l[:, k], y, balanced=True)["best_accuracy"]["threshold"])
    if n_nets > 1:
        row("stack of head + network 1, every pair", *refit(cal_p, cal_l[:, :1], dev_p, dev_l[:, :1], y))
    row("stack, every pair", dev_s, threshold)
    if n_nets > 1:
        row("stack, later networks in their steps", dev_step, threshold)
    cal_out, dev_out = verifier.combine(cal_p), verifier.combine(dev_p)  # outside the band: the head's, on the stack's scale
    right = lambda s: float(((s[dev_apart] >= threshold) == (dy[dev_apart] == 1)).mean())  # noqa: E731
    for miss in (float(x) for x in args.miss.split(",")):
        lo, hi = choose_band(cal_p, cal_out, cal_s, threshold, miss)
        band = (dev_p >= lo) & (dev_p <= hi)
        cascade = np.where(band, dev_step, dev_out)
        row(f"cascade, miss {miss:g}", cascade, threshold, band.mean())
        widened = np.where(band | dev_apart, dev_step, dev_out)
        row("  + one word apart", widened, threshold, (band | dev_apart).mean())
        out["rows"][-1]["one_word_apart_accuracy"] = [round(right(cascade), 4), round(right(widened), 4)]
        print(f"    on the {dev_apart.sum():,} pairs one word apart: accuracy {right(cascade):.4f} -> {right(widened):.4f}")
    print(f"verifier: {out['verifier_pairs_per_second']:,} dev pairs/s in numpy")
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
