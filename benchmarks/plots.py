"""Plots of a model on labeled pairs: accuracy and F1 against the threshold, and the precision-recall curve.

Writes threshold.png and precision_recall.png (matplotlib, from the 'bench' extra) to --out.

Usage: python benchmarks/plots.py [--model DIR] [--pairs dev.csv] [--out benchmarks/results/] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def save(plt, fig, ax, path: Path) -> None:
    """The finish both plots share: a 0-1 score axis, legend, grid, then write the PNG."""
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    ap.add_argument("--pairs", default=str(ROOT.parent / "shared" / "data" / "quora" / "dev.csv"), help="labeled pairs (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the PNGs (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is not installed: pip install 'dupfinder[bench]'")
    from dupfinder import load_model
    from dupfinder.engine import set_threads
    from dupfinder.evaluation.metrics import pair_metrics, roc_auc, threshold_sweep
    from dupfinder.evaluation.pairs import score_pairs
    from dupfinder.io import load_pairs

    set_threads(args.threads)
    encoder = load_model(args.model)
    pairs = load_pairs(args.pairs)
    scores = score_pairs(encoder, pairs)
    labels = pairs.label.astype(bool)
    tau = encoder.threshold
    at_tau = pair_metrics(scores, labels, tau)
    auc = roc_auc(scores, labels)
    sweep = threshold_sweep(scores, labels)
    balanced = threshold_sweep(scores, labels, balanced=True)
    # the first cut calls nothing a duplicate; it sits above every score and would stretch the axis
    cut = slice(1, None)
    name = f"{Path(encoder.path).name} ({encoder.fingerprint})"
    source = f"{Path(args.pairs).name}, {len(pairs):,} pairs"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = sweep["threshold"][cut]
    ax.plot(t, sweep["accuracy"][cut], label="accuracy")
    ax.plot(t, balanced["accuracy"][cut], label="balanced accuracy", linestyle=":")
    ax.plot(t, sweep["f1"][cut], label="F1")
    ax.plot(t, sweep["precision"][cut], label="precision", alpha=0.5)
    ax.plot(t, sweep["recall"][cut], label="recall", alpha=0.5)
    ax.axvline(tau, color="grey", linestyle="--", linewidth=1)
    ax.annotate(f"tau {tau:.3f}\naccuracy {at_tau['accuracy']:.3f}\nF1 {at_tau['f1']:.3f}", (tau, 0.05), xytext=(6, 0), textcoords="offset points", fontsize=8)
    ax.set_xlim(max(-1.0, float(t.min())), min(1.0, float(t.max())))
    ax.set_xlabel("threshold (cosine): duplicate when score >= threshold")
    ax.set_title(f"{name} on {source}", fontsize=10)
    save(plt, fig, ax, out / "threshold.png")

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(sweep["recall"][cut], sweep["precision"][cut])
    ax.plot([at_tau["recall"]], [at_tau["precision"]], "o", color="C3", label=f"tau {tau:.3f}")
    ax.axhline(labels.mean(), color="grey", linestyle=":", linewidth=1, label=f"share of duplicates {labels.mean():.2f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{name} on {source}\nROC-AUC {auc:.3f}", fontsize=10)
    save(plt, fig, ax, out / "precision_recall.png")

    summary = {"model": str(encoder.path), "fingerprint": encoder.fingerprint, "pairs": str(args.pairs), "threshold": tau,
               "at_threshold": at_tau, "roc_auc": auc, "files": [str(out / "threshold.png"), str(out / "precision_recall.png")]}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    from dupfinder.errors import DupfinderError

    try:
        main()
    except DupfinderError as e:
        sys.exit(f"Error: {e}")
