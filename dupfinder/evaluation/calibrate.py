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


def _cuts(scores: np.ndarray, labels: np.ndarray, target_precision: float, balanced: bool) -> tuple[float, float | None, dict]:
    """The tau of best (balanced) accuracy, the lowest tau reaching `target_precision` (None when
    no cut does), and the plain sweep. Cut 0 lies above every score and predicts no duplicate: its
    precision is vacuous, so it never counts as reaching the target."""
    sweep = threshold_sweep(scores, labels, balanced=balanced)
    best = float(sweep["threshold"][int(np.argmax(sweep["accuracy"]))])
    plain = threshold_sweep(scores, labels)
    reach = np.flatnonzero(plain["precision"][1:] >= target_precision) + 1
    return best, float(plain["threshold"][reach.max()]) if len(reach) else None, plain


def advise(scores: np.ndarray, labels: np.ndarray, target_precision: float = 0.90, balanced: bool = True) -> dict:
    """The tau that maximizes accuracy (balanced by default) and the lowest tau whose precision
    reaches `target_precision`, each with its metrics; `at_precision` is None when no cut does."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise InputError("calibration needs both duplicates and non-duplicates among the labeled pairs")
    best, tau_p, plain = _cuts(scores, labels, target_precision, balanced)
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
    """The manifest's `calibration` entry: the tau of best (balanced) accuracy and the lowest tau
    reaching `target_precision` (None when none does). Unlike `advise`, it takes a split of one
    class too (a tiny validation split), as training always has."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    best, tau_p, _ = _cuts(scores, labels, target_precision, balanced)
    sweep = threshold_sweep(scores, labels, balanced=balanced)
    return {
        "threshold": best,
        "accuracy_at_threshold": float(sweep["accuracy"].max()),
        "balanced": balanced,
        "target_precision": target_precision,
        "threshold_at_precision": tau_p,
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
