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
NEGATIONS = frozenset("n't not".split())  # "don't" and "do not" read alike; a negation never drops out
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


_FORMS: dict[str, str | None] = {}  # token -> its canonical form; None: not a word or an article (dropped)
_FORMS_SIZE = 300_000  # tokens remembered before starting again (unknown words pile up in a server)


def form(token: str) -> str | None:
    """A token's canonical form, or None where it drops out (punctuation, articles); remembered."""
    f = _FORMS.get(token, False)
    if f is False:
        if not _WORD.search(token) or token in ARTICLES:
            f = None
        elif token in AUXILIARIES:
            f = "<aux>"
        elif token in NEGATIONS:
            f = "not"
        elif token in SECOND_PERSON:
            f = "<you>"
        else:
            f = stem(token)
        if len(_FORMS) > _FORMS_SIZE:
            _FORMS.clear()
        _FORMS[token] = f
    return f


def words(tokens: Sequence[str]) -> tuple[str, ...]:
    """The tokens with a word character ("n't" and "'s" too), in order: what the rule compares."""
    return tuple(t for t in tokens if _WORD.search(t))


def text_words(text: str, config: TextConfig | None = None) -> tuple[str, ...]:
    """`words` of a question's tokens, read with the model's text settings."""
    return words(tokenize(text, config))


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
        f = form(w)
        if f is not None:
            out.append(f)
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
        c = reworded(text_words(q1, config), text_words(q2, config))
        if c is not None:
            counts[c][0] += 1
            counts[c][1] += int(label)
    return {"rates": {c: round(d / n, 4) for c, (n, d) in counts.items() if n >= max(min_pairs, 1)},
            "pairs": {c: n for c, (n, _) in counts.items()}, "duplicates": {c: d for c, (_, d) in counts.items()},
            "of_pairs": total}


def pairs_record(pairs, config: TextConfig | None = None, file: str | None = None) -> dict:
    """`class_rates` of a loaded pairs file (dupfinder.io.Pairs), with the file's name."""
    return {**class_rates(zip(pairs.texts(1), pairs.texts(2), pairs.label.tolist()), config), "file": file}


def add_rewording(model_dir, train_file, log=print) -> dict:
    """Measure the rewording classes' duplicate rates on a labeled pairs file and store them in the
    model's verdict entry (the manifest, written atomically). Returns the record."""
    from dupfinder.engine import load_encoder
    from dupfinder.errors import ModelError
    from dupfinder.io import load_pairs
    from dupfinder.verdict.head import update_verdict_entry

    missing = "train one with `dupfinder train-verdict` first"
    encoder = load_encoder(model_dir)
    if not isinstance(encoder.manifest.get("verdict"), dict):  # before the pairs file is read
        raise ModelError(f"{model_dir} has no verdict stage; {missing}")
    record = pairs_record(load_pairs(train_file), encoder.text_config, Path(train_file).name)
    update_verdict_entry(model_dir, {"rewording": record}, missing)
    log(f"rewordings in {record['of_pairs']:,} pairs: " + ", ".join(
        f"{c} {record['pairs'][c]:,} ({record['rates'][c]:.1%} duplicates)" if c in record["rates"]
        else f"{c} {record['pairs'][c]:,} (under {MIN_PAIRS}: not used)" for c in CLASSES))
    return record


def _prepared(q) -> tuple:
    """(canonical words without "how ADJ", the same sorted, whether "how ADJ" occurs) of a question
    the verdict stage read (its `text_tokens`), worked out once per question."""
    r = getattr(q, "rewording", None)
    if r is None:
        tokens = q.text_tokens
        known = _FORMS.get
        plain = []
        for t in tokens:
            f = known(t, False)
            if f is False:
                f = form(t)
            if f is not None:
                plain.append(f)
        plain = tuple(plain)
        how = False
        if "how" in tokens:
            w = words(tokens)
            table = attributes()
            how = any(a == "how" and b in table for a, b in zip(w, w[1:]))
        r = q.rewording = (plain, tuple(sorted(plain)), how)
    return r


def reworded_questions(qa, qb) -> str | None:
    """`reworded` of two questions the verdict stage read: equal lengths first (reading "how ADJ"
    as "what NOUN" keeps a question's length), then "how ADJ" only where a question has it."""
    pa, sa, how_a = _prepared(qa)
    pb, sb, how_b = _prepared(qb)
    if len(pa) != len(pb) or not pa:
        return None
    if how_a or how_b:
        return reworded(words(qa.text_tokens), words(qb.text_tokens))
    return "same" if pa == pb else "reorder" if sa == sb else None


def one_word_apart(qa, qb) -> bool:
    """Whether two questions the verdict stage read differ in exactly one aligned canonical word: a
    single substitution, where the words the two share say least about what they mean."""
    pa, pb = _prepared(qa)[0], _prepared(qb)[0]
    return len(pa) == len(pb) and sum(x != y for x, y in zip(pa, pb)) == 1


class Rewordings:
    """A verdict stage (head or cascade) whose score is raised to its class's duplicate rate for the
    pairs that are rewordings of each other. Used wherever the stage is (`featurizer`, `score`,
    `threshold`, `cosine_floor`, `kind`)."""

    def __init__(self, stage, rates: dict[str, float]):
        self.stage = stage
        self.rates = {c: float(r) for c, r in rates.items() if c in CLASSES}
        self.raised = 0  # pairs whose score the rule raised (benchmarks)

    def __getattr__(self, name):  # featurizer, kind, cosine_floor, calls, ... of the wrapped stage
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
            c = reworded_questions(qa, qb)
            if c is not None and c in self.rates and p[i] < self.rates[c]:
                p[i] = self.rates[c]
                self.raised += 1
        return p


def load_encoder_rewordings(encoder, stage):
    """`stage` wrapped by the model's rewording rule where its verdict entry has one, else `stage`."""
    record = (encoder.manifest.get("verdict") or {}).get("rewording")
    if not record:
        return stage
    rates = record.get("rates") if isinstance(record, dict) else None
    if not isinstance(rates, dict) or not all(isinstance(r, (int, float)) and 0 <= r <= 1 for r in rates.values()):
        from dupfinder.errors import ModelError

        raise ModelError(f"{getattr(encoder, 'path', 'the model')}/manifest.json has a damaged verdict.rewording entry; "
                         f"write it again with `dupfinder train-rewording MODEL_DIR TRAIN_FILE`")
    return Rewordings(stage, rates)
