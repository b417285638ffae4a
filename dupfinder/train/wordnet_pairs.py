"""Constructed pairs that teach the verdict head what one word does, from training questions and
WordNet (Debian's wordnet-base, read by nltk; training only, nothing is downloaded): one content
word replaced by a synonym of its first sense (a duplicate), by a sibling concept under the same
hypernym or by an antonym (not a duplicate). Replacements must be in the model's trained
vocabulary, so the encoder reads them."""

from __future__ import annotations

import re
from typing import Callable, Iterable

import numpy as np

from dupfinder.text import Vocab

_ALPHA = re.compile(r"^[a-z]{3,}$")
STOP = frozenset("what which when where who whom whose why how does do did is are was were will would can could should "
                 "have has had the and for with that this from into about your you they them their there then than "
                 "best good some many much more most make made get gets become".split())


def wordnet(data_dir: str | None = None):
    """nltk's WordNet reader over a data folder (default: nltk's search path, e.g. $NLTK_DATA)."""
    import nltk

    if data_dir:
        nltk.data.path.insert(0, data_dir)
    from nltk.corpus import wordnet as wn

    wn.ensure_loaded()
    return wn


def replacements(wn, word: str, known: Callable[[str], bool], close: Callable[[str, str], float]) -> dict[str, list[str]]:
    """{"same": synonyms, "other": siblings and antonyms} of a word's first noun, verb or adjective
    sense. WordNet's synonyms of a first sense are often another sense in a question ("coffee" ->
    "java"): a synonym must also be close in the encoder's word space (`close` >= 0.5), and a
    sibling related enough (>= 0.35) to be a hard case ("english" -> "dutch"), not a random word."""
    out = {"same": [], "other": []}
    synsets = wn.synsets(word)
    if not synsets:
        return out
    first = synsets[0]
    for lemma in first.lemmas():
        name = lemma.name().lower()
        if name != word and _ALPHA.match(name) and known(name) and close(word, name) >= 0.5:
            out["same"].append(name)
        for ant in lemma.antonyms():
            a = ant.name().lower()
            if _ALPHA.match(a) and known(a):
                out["other"].append(a)
    if first.pos() == "n" and not word.endswith("ing"):
        for hyper in first.hypernyms()[:2]:
            for sib in hyper.hyponyms():
                if sib == first:
                    continue
                for lemma in sib.lemmas()[:1]:
                    name = lemma.name().lower()
                    if name != word and _ALPHA.match(name) and known(name) and name not in out["same"] and close(word, name) >= 0.35:
                        out["other"].append(name)
    return out


def wordnet_pairs(texts: Iterable[str], tokenize: Callable[[str], list[str]], vocab: Vocab, trained_words: int, n: int,
                  embed: np.ndarray, seed: int = 0, data_dir: str | None = None) -> list[tuple[str, str, int]]:
    """Up to n (question, changed question, label) triples, about half duplicates; `embed` is the
    encoder's word embedding table (V, E)."""
    wn = wordnet(data_dir)
    unit = embed / np.maximum(np.linalg.norm(embed, axis=1, keepdims=True), 1e-6)
    close = lambda a, b: float(unit[vocab.stoi[a]] @ unit[vocab.stoi[b]])  # noqa: E731
    rng = np.random.default_rng(seed)
    known = lambda w: 1 < vocab.stoi.get(w, 0) < trained_words  # noqa: E731  (a word the encoder was trained on)
    cache: dict[str, dict] = {}
    out: list[tuple[str, str, int]] = []
    counts = {0: 0, 1: 0}
    texts = list(texts)
    for i in rng.permutation(len(texts)).tolist():
        tokens = tokenize(texts[i])
        cand = [t for t in dict.fromkeys(tokens) if _ALPHA.match(t) and t not in STOP and known(t)]
        if not cand:
            continue
        w = cand[rng.integers(len(cand))]
        if w not in cache:
            cache[w] = replacements(wn, w, known, close)
        r = cache[w]
        label = 1 if counts[1] <= counts[0] else 0
        pool = r["same"] if label else r["other"]
        if not pool:
            label = 1 - label
            pool = r["same"] if label else r["other"]
            if not pool:
                continue
        new = pool[rng.integers(len(pool))]
        out.append((" ".join(tokens), " ".join(new if t == w else t for t in tokens), label))
        counts[label] += 1
        if len(out) >= n:
            break
    return out


LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
            "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object noun.person "
            "noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
            "noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
            "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
            "verb.social verb.stative verb.weather adj.ppl").split()
_LEX_POS = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def setup_wordnet(dest: str, source: str = "/usr/share/wordnet") -> str:
    """An nltk data folder at `dest` from Debian's WordNet files (apt-get install wordnet-base): the
    files copied to dest/corpora/wordnet, plus the `lexnames` file Debian does not ship (WordNet
    3.0's 45 lexicographer files). Set NLTK_DATA=dest for train-verdict --wordnet-pairs."""
    import shutil
    from pathlib import Path

    target = Path(dest) / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    for f in Path(source).iterdir():
        if f.is_file():
            shutil.copy(f, target / f.name)
    (target / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{_LEX_POS[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES)))
    return str(target)


def attribute_lines(wn) -> list[str]:
    """WordNet's attribute relation as `adjective TAB noun,noun` lines (old -> age): the nouns name
    what the adjective measures. One-word lemmas only; adjectives and nouns in WordNet's order."""
    table: dict[str, list[str]] = {}
    for synset in wn.all_synsets("n"):
        nouns = [n for n in (lemma.name().lower() for lemma in synset.lemmas()) if _ALPHA.match(n)]
        for adjective in synset.attributes():
            for lemma in adjective.lemmas():
                a = lemma.name().lower()
                if _ALPHA.match(a):
                    table.setdefault(a, [])
                    table[a] += [n for n in nouns if n not in table[a]]
    return [f"{a}\t{','.join(nouns)}" for a, nouns in sorted(table.items()) if nouns]


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] not in ("--setup", "--attributes"):
        sys.exit("usage: python -m dupfinder.train.wordnet_pairs --setup NLTK_DATA_DIR | --attributes OUT_TSV")
    if sys.argv[1] == "--setup":
        print(setup_wordnet(sys.argv[2]))
    else:
        from pathlib import Path

        header = "# WordNet 3.0's attribute relation (adjective -> nouns), written by python -m dupfinder.train.wordnet_pairs --attributes\n"
        Path(sys.argv[2]).write_text(header + "\n".join(attribute_lines(wordnet())) + "\n", encoding="utf-8")
        print(sys.argv[2])
