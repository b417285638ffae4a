"""Threshold advice from labeled pairs (the tau of best accuracy, the tau reaching a target precision)
and writing a chosen tau into a model's manifest.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dupfinder.model.files import FORMAT_VERSION, read_json, write_atomic
from dupfinder.io import Pairs
from dupfinder.model.encoder import Encoder
from dupfinder.errors import InputError, ModelError
from dupfinder.evaluation.metrics import pair_metrics, threshold_sweep
from dupfinder.evaluation.pairs import score_pairs


def metrics_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Pair metrics at `score > threshold`, with balanced accuracy (mean of the two class recalls) added."""
    m = pair_metrics(scores, labels, threshold)
    c = m["confusion"]
    tnr = c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else 0.0
    m["balanced_accuracy"] = (m["recall"] + tnr) / 2
    return m


def advise(scores: np.ndarray, labels: np.ndarray, target_precision: float = 0.90, balanced: bool = True) -> dict:
    """The tau that maximizes accuracy (balanced by default) and the lowest tau whose precision
    reaches `target_precision`, each with its metrics.

    The cut that calls nothing a duplicate has no precision to speak of, so it never meets the
    target; when no other cut does, `at_precision` is None.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise InputError("calibration needs both duplicates and non-duplicates among the labeled pairs")
    sweep = threshold_sweep(scores, labels, balanced=balanced)
    best = float(sweep["threshold"][int(np.argmax(sweep["accuracy"]))])
    plain = threshold_sweep(scores, labels)
    # index 0 is the cut above every score: it predicts nothing positive
    reach = np.flatnonzero(plain["precision"][1:] >= target_precision) + 1
    tau_p = float(plain["threshold"][reach.max()]) if len(reach) else None
    return {
        "pairs": int(len(labels)),
        "duplicates": int(labels.sum()),
        "balanced": balanced,
        "best_accuracy": metrics_at(scores, labels, best),
        "target_precision": target_precision,
        "at_precision": None if tau_p is None else metrics_at(scores, labels, tau_p),
        "max_precision": float(plain["precision"][1:].max()),
    }


def calibrate(scores: np.ndarray, labels: np.ndarray, target_precision: float = 0.90, balanced: bool = True) -> dict:
    """`advise` as the manifest's `calibration` entry: the tau of best (balanced) accuracy and the
    lowest tau reaching `target_precision` (None when none does)."""
    advice = advise(scores, labels, target_precision, balanced)
    best, at_p = advice["best_accuracy"], advice["at_precision"]
    return {
        "threshold": best["threshold"],
        "accuracy_at_threshold": best["balanced_accuracy" if balanced else "accuracy"],
        "balanced": balanced,
        "target_precision": target_precision,
        "threshold_at_precision": None if at_p is None else at_p["threshold"],
    }


def calibrate_model(encoder: Encoder, pairs: Pairs, threshold: float, target_precision: float = 0.90, balanced: bool = True,
                    scores: np.ndarray | None = None) -> dict:
    """`advise` on `scores` of `pairs` (default: the model's cosines), plus the metrics at the threshold in force."""
    scores = score_pairs(encoder, pairs) if scores is None else scores
    result = advise(scores, pairs.label, target_precision, balanced)
    result["current"] = metrics_at(scores, pairs.label.astype(bool), threshold)
    return result


def calibration_record(advice: dict, choice: str, source: str) -> dict:
    """The manifest's `calibration` entry for a tau chosen from `advice` ('accuracy' or 'precision')."""
    chosen = advice["best_accuracy"] if choice == "accuracy" else advice["at_precision"]
    if chosen is None:
        raise InputError(
            f"no threshold reaches precision {advice['target_precision']:g} on {source} "
            f"(the best is {advice['max_precision']:.4f}); lower --target-precision"
        )
    at_p = advice["at_precision"]
    return {
        "threshold": chosen["threshold"],
        "chosen_for": choice,
        "accuracy_at_threshold": chosen["balanced_accuracy" if advice["balanced"] else "accuracy"],
        "balanced": advice["balanced"],
        "target_precision": advice["target_precision"],
        "threshold_at_precision": None if at_p is None else at_p["threshold"],
        "best_accuracy_threshold": advice["best_accuracy"]["threshold"],
        "pairs_file": source,
        "pairs": advice["pairs"],
        "calibrated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_threshold(model_dir: str | Path, calibration: dict) -> dict:
    """Set the model's `threshold` and `calibration` in manifest.json, atomically; nothing else changes.

    The fingerprint covers weights, vocabulary and config, not the threshold, so it stays valid.
    Returns the manifest as written.
    """
    path = Path(model_dir) / "manifest.json"
    manifest = read_json(path)
    if not isinstance(manifest, dict) or "format_version" not in manifest:
        raise ModelError(f"{path} is not a dupfinder model manifest")
    if not isinstance(manifest["format_version"], int) or manifest["format_version"] > FORMAT_VERSION:
        raise ModelError(f"{path.parent} has model format {manifest['format_version']}, newer than this dupfinder writes; upgrade dupfinder")
    tau = float(calibration["threshold"])
    if not math.isfinite(tau):
        raise ValueError(f"threshold must be finite, got {tau}")
    manifest["threshold"] = tau
    manifest["calibration"] = calibration
    try:
        write_atomic(path, json.dumps(manifest, indent=2).encode())
    except OSError as e:
        raise ModelError(f"cannot write {path}: {e.strerror or e}; copy the model somewhere writable and use --model") from None
    return manifest
