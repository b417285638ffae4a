"""Could a teacher pass dev labels to the student? Dev pairs among a teacher file's neighbour pairs.

all-MiniLM-L6-v2 lists Quora Question Pairs among its training sets, so it may have learned dev
pairs as duplicates. Training with a recipe's `kd_swaps` (the `--kd-swaps` option when the
committed results were made) learns the teacher's cosine of each training question and its teacher
neighbours (`dupfinder teacher --neighbours K`). A dev pair whose two questions are such a neighbour pair would reach the student through the teacher. This counts,
per dev label, the dev pairs whose questions are both in the training file (which the benchmark's
split by pair allows for any Quora-trained model) and those that are teacher-neighbour pairs.
Questions match by their normalized text (`dupfinder.text.normalize`).

Usage: python research/teacher_leak.py --teacher teacher.npz [--train ...] [--dev ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import environment, print_environment  # noqa: E402

DATA = Path(__file__).parents[1].parent / "shared/data/quora"


def normalized_questions(pairs) -> dict[int, str]:
    """qid -> normalized text: how questions are matched across files."""
    from dupfinder.text import normalize

    return {q: normalize(t) for q, t in pairs.questions.items()}


def neighbour_pairs(train_text: dict[int, str], teacher: str | Path) -> set[frozenset[str]]:
    """The teacher file's (question, neighbour) pairs as unordered pairs of normalized texts
    (`train_text`: `normalized_questions` of the pairs file the teacher was made from)."""
    with np.load(teacher, allow_pickle=False) as z:
        if "neighbour_qids" not in z.files:
            return set()
        anchors, found = z["neighbour_qids"].tolist(), z["neighbour_sources"].tolist()
    return {frozenset((train_text[a], train_text[b])) for a, b in zip(anchors, found) if a in train_text and b in train_text}


def leak_counts(dev, train_text: dict[int, str], pairs: set[frozenset[str]]) -> list[dict]:
    """Per dev label: pairs, pairs with both questions among `train_text`'s, pairs among `pairs`."""
    from dupfinder.text import normalize

    in_train = set(train_text.values())
    q1 = [normalize(t) for t in dev.texts(1)]
    q2 = [normalize(t) for t in dev.texts(2)]
    rows = []
    for label in (1, 0):
        idx = np.flatnonzero(dev.label == label).tolist()
        rows.append({
            "label": label, "pairs": len(idx),
            "both_in_train": sum(q1[i] in in_train and q2[i] in in_train for i in idx),
            "teacher_neighbours": sum(frozenset((q1[i], q2[i])) in pairs for i in idx),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True, help="teacher file from `dupfinder teacher --neighbours K`")
    ap.add_argument("--train", default=str(DATA / "train.csv.gz"), help="the pairs file the teacher was made from")
    ap.add_argument("--dev", default=str(DATA / "dev.csv"))
    ap.add_argument("--out", default=None, help="JSON file to write (default: none)")
    args = ap.parse_args()

    from dupfinder.io import load_pairs

    env = environment()
    print_environment(env)
    train_text = normalized_questions(load_pairs(args.train))  # normalized once, for both counts
    dev = load_pairs(args.dev)
    pairs = neighbour_pairs(train_text, args.teacher)
    rows = leak_counts(dev, train_text, pairs)
    print(f"{len(pairs):,} distinct teacher-neighbour pairs in {args.teacher}")
    print("| dev label | pairs | both questions in train | teacher-neighbour pairs |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {'duplicate' if r['label'] else 'not duplicate'} | {r['pairs']:,} | {r['both_in_train']:,} | {r['teacher_neighbours']:,} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"environment": env, "teacher": args.teacher, "neighbour_pairs": len(pairs), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
