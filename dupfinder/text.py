"""Text normalization, tokenization and the vocabulary.

The settings live in `TextConfig`, saved with every model, so training and querying tokenize alike.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

# Words, GloVe-style clitics ("do n't", "what 's") and single punctuation marks.
_TOKEN_RE = re.compile(r"\w+(?=n't\b)|n't\b|'\w+|\w+|[^\w\s]")
_END_MARKS = frozenset("?.!")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00b4": "'"})


@dataclass
class TextConfig:
    lowercase: bool = True  # Quora casing is noisy; GloVe 6B is lowercase
    max_len: int = 48  # tokens kept per question; 99% of Quora questions are shorter
    # drop the ?, . and ! that end a question: they say little, and a backward LSTM state that has
    # read only "?" is the same for every question (False in models made before this option)
    drop_end_punct: bool = False


def normalize(text: str, config: TextConfig | None = None) -> str:
    """Unicode NFKC, straight quotes, single spaces, lowercase: the form that is tokenized and hashed."""
    config = config or TextConfig()
    if not text.isascii():  # NFKC and the quote map leave ASCII as it is
        text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = " ".join(text.split())  # str.split's whitespace is the regex \s of str patterns
    return text.lower() if config.lowercase else text


def tokenize(text: str, config: TextConfig | None = None) -> list[str]:
    """Split a normalized question into tokens, at most `max_len` of them.

    >>> tokenize("What's the best way to learn C++? I don't know.")[:8]
    ['what', "'s", 'the', 'best', 'way', 'to', 'learn', 'c']
    """
    config = config or TextConfig()
    tokens = _TOKEN_RE.findall(normalize(text, config))
    if config.drop_end_punct:
        end = len(tokens)
        while end > 1 and tokens[end - 1] in _END_MARKS:  # a question of marks alone keeps its first
            end -= 1
        tokens = tokens[:end]
    return tokens[: config.max_len]


class Vocab:
    """Token <-> id map with PAD = 0 and UNK = 1."""

    def __init__(self, tokens: list[str]):
        if tokens[:2] != [PAD, UNK]:
            raise ValueError("a vocabulary starts with <pad>, <unk>")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_freq: int = 2, max_size: int | None = None) -> "Vocab":
        counts = Counter(t for tokens in token_lists for t in tokens)
        # most frequent first, ties alphabetically so the vocabulary is deterministic
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2)]
        return cls([PAD, UNK, *ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> np.ndarray:
        get = self.stoi.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int32, count=len(tokens))

    def to_json(self) -> str:
        return json.dumps(self.itos, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        return cls(json.loads(text))
