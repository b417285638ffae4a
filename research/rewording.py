"""The rewording rule on dev, and why it stops there: dev pairs by rewording class (same, reorder)
with the verdict stage's accuracy without and with the rule; the classes' duplicate rates on the
training file (what the rule stores); and the pairs one word apart after the rule's mapping (a
single substitution), by the cosine of the two words in the encoder's word space, with their
duplicate rate on the training file and on dev and the stage's accuracy on dev: a rule that calls
substitutions "not duplicate" would have to beat the stage there.

    python research/rewording.py [--model DIR] [--out research/results/rewording.json]
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from common import environment  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"


def substitution(a, b):
    """(word a, word b, words) when the two canonical word lists differ in one aligned word, else None."""
    from dupfinder.verdict.rewording import canonical

    ca, cb = canonical(a, b), canonical(b, a)
    ops = [o for o in difflib.SequenceMatcher(a=ca, b=cb, autojunk=False).get_opcodes() if o[0] != "equal"]
    if len(ops) == 1 and ops[0][0] == "replace" and ops[0][2] - ops[0][1] == 1 and ops[0][4] - ops[0][3] == 1:
        return ca[ops[0][1]], cb[ops[0][3]], len(ca)
    return None


def main() -> None:
    from dupfinder.engine import Engine, load_encoder
    from dupfinder.io import load_pairs
    from dupfinder.model.files import load_numpy_weights
    from dupfinder.verdict.rewording import reworded, text_words

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rewording.json")
    args = ap.parse_args()
    t0 = time.time()
    enc = load_encoder(args.model)
    cfg = enc.text_config
    with_rule = Engine(enc)
    without = Engine(load_encoder(args.model))
    without.verdict.head.rates.clear()  # the same stage, the rule off
    dev = load_pairs(DATA / "dev.csv")
    pairs = list(zip(dev.texts(1), dev.texts(2)))
    y = dev.label.astype(bool)
    on = np.array([r["duplicate"] for r in with_rule.similarities(pairs)])
    off = np.array([r["duplicate"] for r in without.similarities(pairs)])
    dev_words = [(text_words(a, cfg), text_words(b, cfg)) for a, b in pairs]
    kinds = np.array([reworded(a, b) or "other" for a, b in dev_words])
    dev_classes = {k: {"pairs": int((kinds == k).sum()), "duplicates": int(y[kinds == k].sum()),
                       "stage_right": int((off == y)[kinds == k].sum()), "stage_with_rule_right": int((on == y)[kinds == k].sum())}
                   for k in ("same", "reorder", "other")}
    overall = {"accuracy_without_rule": round(float((off == y).mean()), 5), "accuracy_with_rule": round(float((on == y).mean()), 5)}

    embed = load_numpy_weights(enc.files)["embed.weight"].astype(np.float32)
    embed /= np.maximum(np.linalg.norm(embed, axis=1, keepdims=True), 1e-6)
    stoi = enc.vocab.stoi

    def cos_bin(a, b):
        i, j = stoi.get(a, 1), stoi.get(b, 1)
        return "unknown word" if i <= 1 or j <= 1 else f"{max(min(int(float(embed[i] @ embed[j]) * 10), 9), -1) / 10:.1f}"

    subs = defaultdict(lambda: {"train_pairs": 0, "train_duplicates": 0, "dev_pairs": 0, "dev_duplicates": 0, "stage_right": 0})
    train = load_pairs(DATA / "train.csv.gz")
    for (a, b), label in zip(zip(train.texts(1), train.texts(2)), train.label.tolist()):
        s = substitution(text_words(a, cfg), text_words(b, cfg))
        if s:
            row = subs[cos_bin(s[0], s[1])]
            row["train_pairs"] += 1
            row["train_duplicates"] += int(label)
    for i, (a, b) in enumerate(dev_words):
        s = substitution(a, b)
        if s:
            row = subs[cos_bin(s[0], s[1])]
            row["dev_pairs"] += 1
            row["dev_duplicates"] += int(y[i])
            row["stage_right"] += int(on[i] == y[i])
    named = {f"{a} / {b}": cos_bin(a, b) for a, b in (("password", "router"), ("from", "going"), ("iphone", "android"))}
    all_subs = {k: sum(r[k] for r in subs.values()) for k in ("dev_pairs", "dev_duplicates", "stage_right")}
    out = {"environment": environment(), "command": " ".join(sys.argv), "dev_overall": overall, "dev_classes": dev_classes,
           "train_rates": enc.manifest["verdict"].get("rewording"),
           "substitutions_by_word_cosine": dict(sorted(subs.items())), "substitutions_on_dev": all_subs,
           "named_substitution_bins": named, "seconds": round(time.time() - t0, 1)}
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("dev_overall", "dev_classes", "substitutions_on_dev", "named_substitution_bins")}, indent=1))
    for k, r in sorted(subs.items()):
        tr = r["train_duplicates"] / max(r["train_pairs"], 1)
        dv = r["dev_duplicates"] / max(r["dev_pairs"], 1)
        st = r["stage_right"] / max(r["dev_pairs"], 1)
        print(f"word cosine {k:>12}: train {r['train_pairs']:6,} pairs {tr:.3f} dup | dev {r['dev_pairs']:4} pairs {dv:.3f} dup, stage right {st:.3f}")


if __name__ == "__main__":
    main()
