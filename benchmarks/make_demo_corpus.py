"""Regenerate dupfinder/demo/questions.csv.gz: 60,000 real unique Quora questions (id,question),
built from WHOLE duplicate clusters of the training file, so that a query has its duplicates in it.

A random sample of questions rarely holds both sides of a duplicate pair, so the demo mostly
answered "no duplicate". Here the duplicate clusters are the connected components of the
is_duplicate=1 pairs of the training file (by qid), and the corpus is, in this order:

1. every cluster of two or more questions with a question on one of the README's example topics
   (`PINNED`: someone's age, resetting or recovering a password) or the other example queries
   tried on the demo (losing weight fast, the best way to learn Python);
2. whole clusters of two or more questions drawn at random (seeded) from the rest, until the
   corpus holds at least `CLUSTER_QUESTIONS` questions;
3. questions in no duplicate pair of the training file, drawn at random (seeded), up to `N`, so
   that a third of the corpus has no duplicate in it, as in a real corpus.

Every question is a real Quora question, whitespace collapsed. Left out: questions over
`MAX_CHARS` characters, with U+FFFD (undecodable bytes), or whose normalized text is already in
the corpus (one per text, the lowest qid of a cluster), and the README's example queries
themselves (`QUERIES`, e.g. "How old are you?" is a question of the training file), so that the
quick start's query finds its duplicates in other words rather than itself. A cluster counts as
one of two or more questions after these filters. id = the training file's qid.

Deterministic: the same train file gives the same bytes (seeded draws, sorted by qid, gzip mtime
0). Quora made this data available for non-commercial purposes only; so is this corpus.

Example: python benchmarks/make_demo_corpus.py ../shared/data/quora/train.csv.gz
         python benchmarks/make_demo_corpus.py --out /tmp/questions.csv.gz   # check: cmp with the shipped file
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from dupfinder.text import normalize

N = 60_000  # at least 50,000 real questions; 60,000 stays under 3 MB gzipped
CLUSTER_QUESTIONS = 40_000  # questions from duplicate clusters (steps 1-2); the rest have no duplicate
MAX_CHARS = 300  # a few Quora "questions" are whole essays; they make a poor demo
SEED = 0
OUT = Path(__file__).resolve().parent.parent / "dupfinder" / "demo" / "questions.csv.gz"

# Clusters always in the corpus: those with a question (lowercased) that matches one of these.
PINNED = {
    "age": r"\bhow old (are|r) (you|u)\b|\bwhat('s| is) your age\b",
    "password reset": r"\breset\b.*\bpassword\b|\bpassword\b.*\breset\b|\bforg[oe]t\b.*\bpassword\b",
    "losing weight fast": r"\blose weight (fast|quickly)\b",
    "learning Python": r"\bbest way to learn python\b",
}
# The example queries of the README, never in the corpus verbatim.
QUERIES = [
    "How old are you?", "What is your age?", "Where are you from?", "Where are you going?",
    "Where are you reading this?", "What is your name?", "How do I reset my password?",
    "What is syncope?", "What is Rapunzel?", "What is exploding head syndrome?",
]


def read_pairs(train_file: str) -> tuple[dict[int, str], list[tuple[int, int]]]:
    """qid -> text (the first text seen for a qid) and the duplicate edges of a Quora pairs file.

    Read with the csv module (not dupfinder's reader, so the script does not depend on where the
    package keeps it); it keeps the rows dupfinder keeps: both questions non-empty, a 0/1 label,
    integer qids, two different qids. Invalid UTF-8 becomes U+FFFD, NUL bytes are dropped.
    """
    raw = Path(train_file).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8-sig", errors="replace").replace("\x00", "")
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader)]
    iq1, iq2, i1, i2, il = (header.index(c) for c in ("qid1", "qid2", "question1", "question2", "is_duplicate"))
    questions: dict[int, str] = {}
    edges: list[tuple[int, int]] = []
    for row in reader:
        if len(row) != len(header):
            continue
        t1, t2, label = row[i1].strip(), row[i2].strip(), row[il].strip()
        if not t1 or not t2 or label not in ("0", "1"):
            continue
        try:
            a, b = int(float(row[iq1])), int(float(row[iq2]))
        except ValueError:
            continue
        questions.setdefault(a, t1)
        questions.setdefault(b, t2)
        if a != b and label == "1":
            edges.append((a, b))
    return questions, edges


def clusters_of(questions: dict[int, str], edges: list[tuple[int, int]]) -> dict[int, list[int]]:
    """Connected components of the duplicate edges (union-find): smallest qid -> sorted qids."""
    parent = {q: q for q in questions}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = defaultdict(list)
    for q in sorted(questions):
        members[find(q)].append(q)
    return dict(members)


def main(train_file: str, out: Path = OUT) -> None:
    questions, edges = read_pairs(train_file)
    clusters = clusters_of(questions, edges)
    queries = {normalize(q) for q in QUERIES}

    def usable(qids: list[int]) -> list[tuple[int, str, str]]:
        """(qid, text, key) of the questions that pass the filters, one per normalized text."""
        out, keys = [], set()
        for q in qids:
            text = " ".join(questions[q].split())
            key = normalize(text)
            if not text or len(text) > MAX_CHARS or "\ufffd" in text or key in queries or key in keys:
                continue
            keys.add(key)
            out.append((q, text, key))
        return out

    groups = [usable(m) for _, m in sorted(clusters.items()) if len(m) >= 2]
    groups = [g for g in groups if len(g) >= 2]
    corpus: dict[int, str] = {}
    seen: set[str] = set()

    def add(group: list[tuple[int, str, str]]) -> None:
        for q, text, key in group:
            if key not in seen:
                seen.add(key)
                corpus[q] = text

    patterns = {topic: re.compile(p) for topic, p in PINNED.items()}
    pinned: dict[str, list[int]] = {topic: [] for topic in PINNED}
    rest = []
    for i, g in enumerate(groups):
        topics = [t for t, p in patterns.items() if any(p.search(text.lower()) for _, text, _ in g)]
        for t in topics:
            pinned[t].append(i)
        if topics:
            add(g)
        else:
            rest.append(i)
    n_pinned = len(corpus)
    n_pinned_clusters = len({i for ids in pinned.values() for i in ids})

    rng = np.random.default_rng(SEED)
    drawn = 0
    for i in rng.permutation(len(rest)).tolist():
        if len(corpus) >= CLUSTER_QUESTIONS:
            break
        add(groups[rest[i]])
        drawn += 1
    n_clustered = len(corpus)

    singles = usable([m[0] for _, m in sorted(clusters.items()) if len(m) == 1])
    singles = [s for s in singles if s[2] not in seen]
    for j in np.sort(rng.choice(len(singles), size=N - len(corpus), replace=False)).tolist():
        add([singles[j]])

    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "question"])
    writer.writerows(sorted(corpus.items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(buf.getvalue().encode("utf-8"), compresslevel=9, mtime=0))

    print(f"{train_file}: {len(questions):,} questions, {len(groups):,} duplicate clusters of 2+ usable questions "
          f"({sum(map(len, groups)):,} questions), {len(singles):,} usable questions in no duplicate pair")
    for topic, ids in pinned.items():
        print(f"  pinned '{topic}': {len(ids)} clusters, {sum(len(groups[i]) for i in ids)} questions")
    print(f"pinned: {n_pinned_clusters} clusters, {n_pinned:,} questions; drawn: {drawn:,} clusters, "
          f"{n_clustered - n_pinned:,} questions; no duplicate: {len(corpus) - n_clustered:,} questions")
    print(f"wrote {out}: {len(corpus):,} questions, {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "quora" / "train.csv.gz"),
                    help="the Quora training pairs file (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=OUT, help="file to write (default: the shipped demo corpus, %(default)s)")
    args = ap.parse_args()
    main(args.train, args.out)
