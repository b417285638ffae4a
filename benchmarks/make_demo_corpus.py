"""Regenerate dupfinder/demo/questions.csv.gz: 60,000 real unique Quora questions (id,question).

Deterministic: the same train file gives the same bytes (seeded sample, sorted by qid, gzip mtime 0).
Quora made this data available for non-commercial purposes.

Example: python benchmarks/make_demo_corpus.py ../shared/data/quora/train.csv.gz
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

import numpy as np

from dupfinder.data import load_questions
from dupfinder.text import normalize

N = 60_000  # the issue asks for at least 50,000; 60,000 stays under 3 MB gzipped
MAX_CHARS = 300  # a few Quora "questions" are whole essays; they make a poor demo
SEED = 0
OUT = Path(__file__).resolve().parent.parent / "dupfinder" / "demo" / "questions.csv.gz"


def main(train_file: str) -> None:
    qs = load_questions(train_file)
    seen: set[str] = set()
    candidates: list[tuple[int, str]] = []
    for qid, text in zip(qs.ids, qs.texts):
        text = " ".join(text.split())
        key = normalize(text)
        if not text or len(text) > MAX_CHARS or key in seen or "\ufffd" in text:
            continue
        seen.add(key)
        candidates.append((int(qid), text))
    candidates.sort()
    pick = np.sort(np.random.default_rng(SEED).choice(len(candidates), size=N, replace=False))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "question"])
    writer.writerows(candidates[i] for i in pick.tolist())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(gzip.compress(buf.getvalue().encode("utf-8"), compresslevel=9, mtime=0))
    print(f"wrote {OUT}: {N:,} of {len(candidates):,} unique questions, {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[2] / "shared" / "data" / "quora" / "train.csv.gz"))
