"""Writes tests/data/release_fixture.json with the code of a released dupfinder: the shipped model's
vectors of a few fixed questions, and the top-5 hits of a few queries over an index of 200 fixed
questions. tests/test_release.py holds the current code to them.

It was run with the release before the package restructuring (commit a0d98bb):

    git worktree add /tmp/oldrel a0d98bb
    PYTHONPATH=/tmp/oldrel python tests/data/make_release_fixture.py /tmp/oldrel
    git worktree remove /tmp/oldrel

Run again only when a release changes the shipped model or the answers on purpose.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

QUESTIONS = [
    "How old are you?",
    "What is your age?",
    "How do I learn Python quickly?",
    "What is the capital of France?",
    "Which city is the capital of France?",
    "Why is the sky blue?",
    "What's 2+2?",
    "C++ vs. Java: which one should I learn first?",
    "How can I lose weight without going to the gym?",
    "Is it safe to invest in the share market in 2017?",
    "Where are you from?",
    "Where are you going?",
    "naïve café résumé: how do you type accents?",
    "???",
    "WHAT IS THE BEST WAY TO MAKE MONEY ONLINE",
    "what is the best way to make money online",
    "How do I get a job at Google as a software engineer after graduating from a small college in India with no internship experience?",
    "Quickly, quietly, quixotically: zebras?",
    "1 2 3 4 5",
    "How does the Indian government plan to fight black money with the ban on 500 and 1000 rupee notes?",
]

QUERIES = [
    "How can I invest in the share market step by step?",
    "Why do I feel so lonely and how can I fix it?",
    "What does it mean to be a Capricorn?",
    "How do I make money online?",
    "How old are you?",
    "What is the best programming language to learn first?",
]

N_CORPUS = 200
K = 5


def corpus(release: Path) -> list[tuple[str, str]]:
    """The first 200 (id, question) rows of the release's demo corpus."""
    text = gzip.decompress((release / "dupfinder" / "demo" / "questions.csv.gz").read_bytes()).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))[1 : N_CORPUS + 1]
    return [(qid, question) for qid, question in rows]


def main(release: Path) -> None:
    from dupfinder import __version__
    from dupfinder.encode import load_model
    from dupfinder.index import Question, QuestionIndex, add_questions
    from dupfinder.search import query

    assert Path(sys.modules["dupfinder"].__file__).is_relative_to(release), "run with PYTHONPATH=RELEASE"
    commit = subprocess.run(["git", "-C", str(release), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    encoder = load_model()
    vectors = encoder.encode(QUESTIONS)  # (20, d) float32, as `dupfinder` encodes a few questions
    rows = corpus(release)
    hits = []
    with tempfile.TemporaryDirectory() as tmp:
        add_questions(Path(tmp) / "ix", encoder, [Question(qid, text, "corpus") for qid, text in rows])
        with QuestionIndex.open(Path(tmp) / "ix") as index:
            for text, found in zip(QUERIES, query(index, encoder, QUERIES, k=K + 1)):
                scores = [h.score for h in found]
                # the order must not hang on a rounding: each of the top K clear of the next by 1e-4
                assert all(a - b > 1e-4 for a, b in zip(scores[: K], scores[1 : K + 1])), (text, scores)
                hits.append({"query": text, "hits": [{"id": h.id, "score": round(h.score, 7)} for h in found[:K]]})
    fixture = {
        "made_with": {"dupfinder": __version__, "commit": commit, "script": "tests/data/make_release_fixture.py"},
        "model_fingerprint": encoder.fingerprint,
        "threshold": encoder.threshold,
        "dimension": int(vectors.shape[1]),
        "questions": QUESTIONS,
        # float32 values rounded to 8 decimals: within 5e-9 of what the release computed
        "vectors": [[round(float(x), 8) for x in v] for v in vectors],
        "corpus": [{"id": qid, "question": text} for qid, text in rows],
        "k": K,
        "queries": hits,
    }
    out = Path(__file__).with_name("release_fixture.json")
    out.write_text(json.dumps(fixture, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {out}: {out.stat().st_size:,} bytes, model {encoder.fingerprint}, {len(QUESTIONS)} vectors, {len(hits)} queries")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
