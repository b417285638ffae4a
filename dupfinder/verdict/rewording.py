"""Rewordings: two questions that say the same thing in other function words ("Can you see me?" /
"Are you seeing me?"). Both are read into a canonical word list: auxiliaries (do, does, can, is,
are, ...) become one word, so do second-person forms (you, your, u, ur, thou, thee, ...), articles
are dropped, inflections are cut (seeing ~ see), and "how ADJ" reads as "what NOUN" where WordNet
names NOUN the attribute ADJ measures (old -> age, tall -> stature) and the other question has
NOUN. Pairs whose canonical lists are equal ("same") or equal as multisets ("reorder") are
duplicates with at least the probability measured for their class on the training pairs, stored
in the model's manifest; the verdict stage's score is raised to that rate, never lowered.

Pure Python and numpy; no torch, no WordNet at run time (the attribute table ships as
`attributes.tsv`, made by `python -m dupfinder.train.wordnet_pairs --attributes`).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dupfinder.text import TextConfig, tokenize
from dupfinder.verdict.features import stem

AUXILIARIES = frozenset("do does can could should would will shall is are am 's 're 'm".split())
SECOND_PERSON = frozenset("you your yours yourself yourselves u ur ya ye thou thee thy thine".split())
ARTICLES = frozenset("the a an".split())
CLASSES = ("same", "reorder")  # equal canonical lists; equal as multisets only
MIN_PAIRS = 100  # labeled pairs a class needs before its duplicate rate is used
ATTRIBUTES_FILE = Path(__file__).with_name("attributes.tsv")
_WORD = re.compile(r"\w")


@lru_cache(maxsize=1)
def attributes() -> dict[str, tuple[str, ...]]:
    """{adjective: the nouns WordNet names as the attribute it measures}: old -> (age,)."""
    table = {}
    for line in ATTRIBUTES_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            adjective, nouns = line.split("\t")
            table[adjective] = tuple(nouns.split(","))
    return table


def words(text: str, config: TextConfig | None = None) -> tuple[str, ...]:
    """The question's words (tokens with a word character), lowercased as the model reads them."""
    return tuple(t for t in tokenize(text, config) if _WORD.search(t))


def canonical(own: Sequence[str], other: Iterable[str]) -> list[str]:
    """`own` words in canonical form; `other` is the other question's words (for "how ADJ")."""
    table = attributes()
    other = set(other)
    out: list[str] = []
    i = 0
    while i < len(own):
        w = own[i]
        if w == "how" and i + 1 < len(own):
            noun = next((n for n in table.get(own[i + 1], ()) if n in other), None)
            if noun is not None:
                out += ["what", noun]
                i += 2
                continue
        if w in AUXILIARIES:
            out.append("<aux>")
        elif w in SECOND_PERSON:
            out.append("<you>")
        elif w not in ARTICLES:
            out.append(stem(w))
        i += 1
    return out


def reworded(a: Sequence[str], b: Sequence[str]) -> str | None:
    """"same", "reorder" or None for two questions' word lists."""
    if not a or not b:
        return None
    ca, cb = canonical(a, b), canonical(b, a)
    if ca == cb:
        return "same"
    if Counter(ca) == Counter(cb):
        return "reorder"
    return None


def class_rates(pairs: Iterable[tuple[str, str, int]], config: TextConfig | None = None, min_pairs: int = MIN_PAIRS) -> dict:
    """The duplicate rate of each rewording class over labeled pairs: the manifest's record. A class
    seen in fewer than `min_pairs` pairs gets no rate (the rule then leaves its pairs alone)."""
    counts = {c: [0, 0] for c in CLASSES}
    total = 0
    for q1, q2, label in pairs:
        total += 1
        c = reworded(words(q1, config), words(q2, config))
        if c is not None:
            counts[c][0] += 1
            counts[c][1] += int(label)
    return {"rates": {c: round(d / n, 4) for c, (n, d) in counts.items() if n >= max(min_pairs, 1)},
            "pairs": {c: n for c, (n, _) in counts.items()}, "duplicates": {c: d for c, (_, d) in counts.items()},
            "of_pairs": total}


def pairs_record(pairs, config: TextConfig | None = None) -> dict:
    """`class_rates` of a loaded pairs file (dupfinder.io.Pairs)."""
    return class_rates(zip(pairs.texts(1), pairs.texts(2), pairs.label.tolist()), config)


def add_rewording(model_dir, train_file, log=print) -> dict:
    """Measure the rewording classes' duplicate rates on a labeled pairs file and store them in the
    model's verdict entry (the manifest, written atomically). Returns the record."""
    import json

    from dupfinder.atomic import write_atomic
    from dupfinder.engine import load_encoder
    from dupfinder.errors import ModelError
    from dupfinder.io import load_pairs

    encoder = load_encoder(model_dir)
    if not isinstance(encoder.manifest.get("verdict"), dict):
        raise ModelError(f"{model_dir} has no verdict stage; train one with `dupfinder train-verdict` first")
    record = pairs_record(load_pairs(train_file), encoder.text_config)
    record["file"] = Path(train_file).name
    path = Path(model_dir) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["verdict"]["rewording"] = record
    try:
        write_atomic(path, json.dumps(manifest, indent=2).encode())
    except OSError as e:
        raise ModelError(f"cannot write {path}: {e.strerror or e}; copy the model somewhere writable") from None
    log(f"rewordings in {record['of_pairs']:,} pairs: " + ", ".join(
        f"{c} {record['pairs'][c]:,} ({record['rates'][c]:.1%} duplicates)" if c in record["rates"]
        else f"{c} {record['pairs'][c]:,} (under {MIN_PAIRS}: not used)" for c in CLASSES))
    return record


class _Reader:
    """The wrapped stage's question reader, keeping each question's words for the rewording test."""

    def __init__(self, featurizer, config: TextConfig):
        self._featurizer, self._config = featurizer, config

    def _keep(self, q, text: str):
        q.rewording_words = words(text, self._config)
        return q

    def question(self, text: str):
        return self._keep(self._featurizer.question(text), text)

    def questions(self, texts: Sequence[str]) -> list:
        return [self._keep(q, t) for q, t in zip(self._featurizer.questions(texts), texts)]

    def __getattr__(self, name):
        return getattr(self._featurizer, name)


class Rewordings:
    """A verdict stage (head or cascade) whose score is raised to its class's duplicate rate for the
    pairs that are rewordings of each other. Used wherever the stage is (`featurizer`, `score`,
    `threshold`, `cosine_floor`, `kind`)."""

    def __init__(self, stage, rates: dict[str, float], config: TextConfig):
        self.stage = stage
        self.rates = {c: float(r) for c, r in rates.items() if c in CLASSES}
        self.featurizer = _Reader(stage.featurizer, config)
        self.raised = 0  # pairs whose score the rule raised (benchmarks)

    def __getattr__(self, name):  # kind, cosine_floor, calls, ... of the wrapped stage
        return getattr(self.stage, name)

    @property
    def threshold(self) -> float:
        return self.stage.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.stage.threshold = value

    def score(self, u: np.ndarray, v: np.ndarray, a: Sequence, b: Sequence) -> np.ndarray:
        p = np.asarray(self.stage.score(u, v, a, b), dtype=np.float64)
        for i, (qa, qb) in enumerate(zip(a, b)):
            c = reworded(qa.rewording_words, qb.rewording_words)
            if c is not None and c in self.rates and p[i] < self.rates[c]:
                p[i] = self.rates[c]
                self.raised += 1
        return p


def load_encoder_rewordings(encoder, stage):
    """`stage` wrapped by the model's rewording rule where its verdict entry has one, else `stage`."""
    record = (encoder.manifest.get("verdict") or {}).get("rewording")
    if not record:
        return stage
    return Rewordings(stage, record["rates"], encoder.text_config)
