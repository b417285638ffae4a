"""How many epochs the subword table should be fitted for, and what it changes on dev.

One long fit of the table (constant learning rate, so its first n epochs are an n-epoch fit) on
the model's vocabulary minus the held-out words `dupfinder train-subwords` keeps out; after each
epoch, the median cosine of the held-out words' predicted vectors to their learned ones (what
the fit reports). Then, for each --dev-epochs count, the model with that table against the model
without one on dev's pairs at the stored threshold (`dupfinder evaluate`'s numbers), and on the
cosines of pairs of made-up words that differ in spelling.

Usage: python research/subwords_fit.py [--model DIR] [--epochs 20] [--dev-epochs 5,20] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import environment, print_environment  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"
MADE_UP = [("How do I install Zorblax?", "How do I install Quibbit?"),
           ("What is a flurbish?", "What is a glemptor?"),
           ("How do I install Zorblax?", "How do I install Zorblaxx?")]  # the last: a misspelling


def dev_metrics(model: Path, dev: Path, train: Path) -> dict:
    from dupfinder.engine import Engine, load_encoder
    from dupfinder.io import load_pairs

    engine = Engine(load_encoder(model))
    result = engine.evaluate(load_pairs(dev), unseen_from=str(train))
    keep = ("accuracy", "precision", "recall", "roc_auc")
    out = {k: round(float(result[k]), 4) for k in keep}
    out["unseen"] = {k: round(float(result["unseen"][k]), 4) for k in keep}
    v = engine.encoder.encode([q for pair in MADE_UP for q in pair])
    out["made_up_cosines"] = [round(float(v[2 * i] @ v[2 * i + 1]), 4) for i in range(len(MADE_UP))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory without a table (default: the shipped model's encoder)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--dev-epochs", default="5,20", help="epoch counts whose tables are scored on dev")
    ap.add_argument("--buckets", type=int, default=65536)
    ap.add_argument("--dev", default=str(DATA / "dev.csv"))
    ap.add_argument("--train", default=str(DATA / "train.csv.gz"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "subwords_fit.json"))
    args = ap.parse_args()

    import torch

    from dupfinder.model.files import DEFAULT_MODEL_DIR, load_numpy_weights, read_model_dir
    from dupfinder.model.subwords import fit_subwords, write_subwords

    torch.set_num_threads(1)
    env = environment()
    print_environment(env)
    print("command:", " ".join(sys.argv))
    work = Path(tempfile.mkdtemp(prefix="subwords_fit-"))
    base = work / "base"
    shutil.copytree(Path(args.model) if args.model else DEFAULT_MODEL_DIR, base)
    manifest = json.loads((base / "manifest.json").read_text())
    if "subwords" in manifest:  # score against the encoder alone
        for f in base.glob("subwords-*.npz"):
            f.unlink()
        manifest["fingerprint"] = manifest.pop("subwords")["encoder_fingerprint"]
        (base / "manifest.json").write_text(json.dumps(manifest, indent=2))
    files = read_model_dir(base)
    embed = load_numpy_weights(files)["embed.weight"].astype(np.float32)
    wanted = {int(e) for e in args.dev_epochs.split(",")}
    curve, tables = [], {}

    def after_epoch(sub, record):
        epoch, cos = record["epochs"], record["median_cosine"]
        curve.append({"epoch": epoch, "held_out_median_cosine": cos})
        print(f"epoch {epoch}: held-out median cosine {cos}", flush=True)
        if epoch in wanted:
            tables[epoch] = (sub, record)

    # the held-out words and seed of `dupfinder train-subwords` (seed 0)
    _, last = fit_subwords(files.vocab.itos, embed, args.buckets, epochs=args.epochs, seed=0, log=lambda _: None,
                           after_epoch=after_epoch)
    results = {"environment": env, "command": " ".join(sys.argv), "buckets": args.buckets, "held_out_words": last["held_out_words"],
               "unk_median_cosine": last["unk_median_cosine"],
               "curve": curve, "dev": {"no table": dev_metrics(base, Path(args.dev), Path(args.train))}}
    print("no table:", results["dev"]["no table"], flush=True)
    for epoch, (sub, record) in sorted(tables.items()):
        model = work / f"e{epoch}"
        shutil.copytree(base, model)
        write_subwords(read_model_dir(model), sub, record)
        results["dev"][f"{epoch} epochs"] = dev_metrics(model, Path(args.dev), Path(args.train))
        print(f"{epoch} epochs:", results["dev"][f"{epoch} epochs"], flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
