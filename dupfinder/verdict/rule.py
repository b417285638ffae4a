"""The verdict rule: when a candidate pair is a duplicate. The one place that compares a score with
a threshold; every command, the engine and the metrics call it. The score is the pair head's
probability where the model has a head (and the caller did not ask for the cosine rule), else the
Siamese cosine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from dupfinder.verdict.head import PairHead

MODES = ("auto", "head", "cosine")  # auto: the head (and its verifier) where the model has one; head: the head alone


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
    """The rule in force: which score (the head's probability or the cosine), its threshold, and
    where the threshold came from ("model" or "option"). `note` says why a head was not used."""

    threshold: float
    source: str = "model"
    head: "PairHead | None" = field(default=None, repr=False, compare=False)
    note: str | None = None

    @property
    def kind(self) -> str:
        return getattr(self.head, "kind", "head") if self.head is not None else "cosine"

    def __call__(self, scores):
        return is_duplicate(scores, self.threshold)

    @classmethod
    def of(cls, model_threshold: float, override: float | None = None) -> "Verdict":
        """The cosine rule at the model's calibrated threshold unless the caller gives one."""
        return cls(float(model_threshold), "model") if override is None else cls(float(override), "option")

    @classmethod
    def for_encoder(cls, encoder, override: float | None = None, mode: str = "auto") -> "Verdict":
        """The verdict of a model directory: its pair head where it has one (mode "auto" or "head"),
        else the cosine rule with a note. A named but broken head is a ModelError in every mode
        but "cosine"."""
        from dupfinder.errors import ModelError
        from dupfinder.verdict.head import load_encoder_head
        from dupfinder.verdict.rewording import load_encoder_rewordings
        from dupfinder.verdict.verifier import load_encoder_verifier

        if mode not in MODES:
            raise ValueError(f"verdict must be one of {MODES}, not {mode!r}")
        if mode == "cosine":
            return cls.of(encoder.threshold, override)
        head = load_encoder_head(encoder)
        if head is None:
            note = f"{getattr(encoder, 'path', 'the model')} has no verdict stage: duplicates are decided by the cosine rule (tau {encoder.threshold:.3f})"
            if mode == "head":
                raise ModelError(f"{getattr(encoder, 'path', 'the model')} has no verdict stage; train one with "
                                 f"`dupfinder train-verdict MODEL_DIR TRAIN_FILE`, or use --verdict cosine")
            return cls(float(encoder.threshold) if override is None else float(override), "model" if override is None else "option", None, note)
        if mode == "auto":  # the interaction verifier and the rewording rule where the model has them
            head = load_encoder_rewordings(encoder, load_encoder_verifier(encoder, head) or head)
        else:  # the head alone, at its own threshold
            head.threshold = float((encoder.manifest["verdict"].get("verifier") or {}).get("head_threshold", head.threshold))
        return cls(head.threshold if override is None else float(override), "model" if override is None else "option", head)

    def scores(self, u: np.ndarray, v: np.ndarray, texts_u: Sequence[str] | None = None,
               texts_v: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(verdict scores (n,), cosines (n,)) of pairs of unit vectors (u[i], v[i]) with their texts.
        The head needs the texts; the cosine rule does not."""
        u = np.asarray(u, dtype=np.float32).reshape(-1, np.shape(u)[-1])  # (n, d)
        v = np.asarray(v, dtype=np.float32).reshape(-1, np.shape(v)[-1])
        cos = np.minimum(np.einsum("ij,ij->i", u, v), 1.0)  # (n,)
        if self.head is None:
            return cos, cos
        if texts_u is None or texts_v is None:
            raise ValueError("the pair head needs the texts of both questions")
        distinct = list(dict.fromkeys([*texts_u, *texts_v]))  # each question read once
        read = dict(zip(distinct, self.head.featurizer.questions(distinct)))
        p = self.head.score(u, v, [read[t] for t in texts_u], [read[t] for t in texts_v])
        return p, cos

    def decide(self, u, v, texts_u=None, texts_v=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, duplicate, cosines) of pairs: `scores` are what the threshold applies to."""
        s, cos = self.scores(u, v, texts_u, texts_v)
        return s, self(s), cos
