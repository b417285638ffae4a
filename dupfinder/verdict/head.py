"""The pair head: a small MLP over a candidate pair's vector and text features, run in numpy
(microseconds a pair, no torch), stored beside the encoder as verdict.npz with its calibrated
threshold in the manifest's "verdict" entry. The encoder's fingerprint does not cover it: adding or
retraining a head leaves stores built with the encoder valid."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dupfinder.errors import ModelError
from dupfinder.verdict.features import N_TEXT, TEXT_FEATURES, QuestionText, TextFeaturizer, vector_features

VERDICT_FILE = "verdict.npz"
HEAD_FORMAT = 1
LAYERS = ("w1", "b1", "w2", "b2", "w3", "b3")


@dataclass
class PairHead:
    """Weights (numpy), the input standardization, the idf table and the threshold on its probability."""

    weights: dict[str, np.ndarray]  # w1 (F, H1), b1 (H1,), w2 (H1, H2), b2 (H2,), w3 (H2, 1), b3 (1,)
    mean: np.ndarray  # (F,) feature means of the training pairs
    std: np.ndarray  # (F,)
    featurizer: TextFeaturizer
    threshold: float
    cosine_floor: float = 0.3  # candidates below this cosine are not duplicates (dedup searches edges down to it)

    def probabilities(self, u: np.ndarray, v: np.ndarray, text: np.ndarray) -> np.ndarray:
        """P(duplicate) of pairs (u[i], v[i]) with text features `text` (n, N_TEXT) -> (n,) float64."""
        vec = vector_features(u, v)  # (n, 2d + 1)
        if len(self.mean) == 1 + N_TEXT:  # a head that reads only the cosine of the two vectors
            vec = vec[:, -1:]
        x = np.concatenate([vec, np.asarray(text, dtype=np.float32)], axis=1)  # (n, F)
        x = (x - self.mean) / self.std
        w = self.weights
        h = np.maximum(_matmul(x, w["w1"]) + w["b1"], 0.0)  # (n, H1)
        h = np.maximum(_matmul(h, w["w2"]) + w["b2"], 0.0)  # (n, H2)
        logit = (h @ w["w3"] + w["b3"])[:, 0]  # (n,)
        return 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))

    def score(self, u: np.ndarray, v: np.ndarray, a: Sequence[QuestionText], b: Sequence[QuestionText]) -> np.ndarray:
        return self.probabilities(u, v, self.featurizer.pairs(a, b))


ROWS_ONE_BY_ONE = 1024  # a server batch at most: 8 searches at the largest k (100)


def _matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w as float32, up to ROWS_ONE_BY_ONE rows one at a time (a matrix-vector product each,
    looped in C): a (40, 529) x (529, 256) product sent OpenBLAS to its threads, which on the busy
    2-core machine took 9-24 ms against 0.2 ms row by row. Each row's product is the same bits
    whatever the batch; past the bound, one matrix product."""
    if len(x) > ROWS_ONE_BY_ONE:
        return x @ w
    return np.matmul(x[:, None, :], w)[:, 0].astype(np.float32, copy=False)  # (n, 1, F) x (F, H) -> (n, H)


def head_arrays(weights: dict, mean: np.ndarray, std: np.ndarray, idf: np.ndarray, idf_unknown: float) -> dict[str, np.ndarray]:
    """What verdict.npz holds (float32, the idf table float16)."""
    out = {k: np.asarray(weights[k], dtype=np.float32) for k in LAYERS}
    out |= {"mean": mean.astype(np.float32), "std": std.astype(np.float32), "idf": idf.astype(np.float16),
            "idf_unknown": np.float32(idf_unknown), "format": np.int32(HEAD_FORMAT),
            "text_features": np.asarray(TEXT_FEATURES)}
    return out


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def load_head(model_dir: Path, manifest: dict, vocab, text_config, embed: np.ndarray) -> PairHead | None:
    """The model directory's head, or None when its manifest names none (older and user-trained
    models: the cosine rule then decides). A named but missing, stale or unreadable file is a ModelError."""
    from dupfinder.model.files import sha256_hex

    record = manifest.get("verdict")
    if record is None:
        return None
    path = Path(model_dir) / (record.get("file", VERDICT_FILE) if isinstance(record, dict) else VERDICT_FILE)
    try:
        data = path.read_bytes()
    except OSError:
        raise ModelError(f"{path} is missing (the manifest names it); restore the model, or remove its \"verdict\" entry to use the cosine rule") from None
    if not isinstance(record, dict) or sha256_hex(data) != record.get("sha256"):
        raise ModelError(f"{path} does not match {Path(model_dir) / 'manifest.json'} (stale or damaged); restore the model")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            a = {name: npz[name] for name in npz.files}
        if int(a["format"]) > HEAD_FORMAT or tuple(a["text_features"].tolist()) != TEXT_FEATURES:
            raise ModelError(f"{path} was written by a newer dupfinder (other features); upgrade dupfinder")
        n_in = a["w1"].shape[0]
        if a["mean"].shape != (n_in,) or a["std"].shape != (n_in,) or a["idf"].shape != (len(vocab),):
            raise ValueError("shapes do not match")
        featurizer = TextFeaturizer(vocab, text_config, a["idf"].astype(np.float32), float(a["idf_unknown"]), embed)
        return PairHead({k: a[k] for k in LAYERS}, a["mean"], a["std"], featurizer, float(record["threshold"]),
                        float(record.get("cosine_floor", 0.3)))
    except ModelError:
        raise
    except Exception as e:  # zipfile and numpy raise many kinds for a damaged file
        raise ModelError(f"{path} is corrupt ({type(e).__name__}: {e}); restore the model") from None



def load_encoder_head(encoder) -> PairHead | None:
    """`load_head` for a loaded `Encoder`, reusing its word embeddings when the numpy path has them."""
    numpy_path = getattr(encoder, "_numpy", None)
    manifest = getattr(encoder, "manifest", None)
    if not isinstance(manifest, dict) or manifest.get("verdict") is None:
        return None  # a model without a head, or a stand-in encoder (tests) without a manifest
    if numpy_path is not None:
        embed = numpy_path.embed
    else:
        from dupfinder.model.files import load_numpy_weights

        weights = load_numpy_weights(encoder.files)
        if weights is None:
            raise ModelError(f"{encoder.path} has a verdict stage but no weights.npz; restore the model")
        embed = weights["embed.weight"]
    head = load_head(encoder.path, encoder.manifest, encoder.vocab, encoder.text_config, embed)
    if head is not None and getattr(numpy_path, "jit", False):  # a long-lived process (use_jit): the compiled features too
        head.featurizer.compile()
    return head


def update_verdict_entry(model_dir: str | Path, changes: dict, missing: str) -> dict:
    """Set keys of the manifest's "verdict" entry, atomically; the cosine tau and the fingerprint stay
    as they are. A model without a verdict stage is a ModelError ending in `missing` (what to do)."""
    import json

    from dupfinder.atomic import write_atomic
    from dupfinder.model.files import read_json

    path = Path(model_dir) / "manifest.json"
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("verdict"), dict):
        raise ModelError(f"{path} names no verdict stage; {missing}")
    manifest["verdict"].update(changes)
    try:
        write_atomic(path, json.dumps(manifest, indent=2).encode())
    except OSError as e:
        raise ModelError(f"cannot write {path}: {e.strerror or e}; copy the model somewhere writable and use --model") from None
    return manifest


def write_head_threshold(model_dir: str | Path, calibration: dict) -> dict:
    """Set the pair head's threshold (and its calibration record) in the manifest, atomically."""
    import math

    threshold = float(calibration["threshold"])
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return update_verdict_entry(model_dir, {"threshold": threshold, "calibration": calibration},
                                "calibrate with --verdict cosine")
