"""The verdict rule: when a score makes two questions duplicates. The one place that compares a
score with the threshold; every command, the engine and the metrics call it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def is_duplicate(scores, threshold: float):
    """`score >= threshold`, elementwise for arrays; a plain bool for one score.

    Calibrated thresholds lie halfway between two observed scores, so `>=` and `>` give the same
    verdicts on the pairs they were chosen on; `>=` makes "at the threshold" a duplicate.
    """
    if np.ndim(scores) == 0:
        return bool(float(scores) >= threshold)
    return np.asarray(scores) >= threshold


@dataclass(frozen=True)
class Verdict:
    """The rule in force: a cosine threshold and where it came from ("model" or "option")."""

    threshold: float
    source: str = "model"

    def __call__(self, scores):
        return is_duplicate(scores, self.threshold)

    @classmethod
    def of(cls, model_threshold: float, override: float | None = None) -> "Verdict":
        """The model's calibrated threshold unless the caller gives one."""
        return cls(float(model_threshold), "model") if override is None else cls(float(override), "option")
