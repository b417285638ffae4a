import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "research"))
from teacher_leak import leak_counts, neighbour_pairs, normalized_questions  # noqa: E402

from dupfinder.io import load_pairs  # noqa: E402

HEADER = "id,qid1,qid2,question1,question2,is_duplicate\n"


def test_dev_pairs_among_teacher_neighbours_are_counted_by_label(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text(HEADER + "1,1,2,How old are you?,What is your age?,1\n"
                              "2,3,4,Where are you from?,Where are you going?,0\n"
                              "3,5,6,Who wrote Hamlet?,Who is the author of Hamlet?,1\n")
    teacher = tmp_path / "t.npz"
    # question 1's neighbour is 3, 5's is 4 (qids of the training file)
    np.savez(teacher, qids=np.array([1, 2, 5, 6]), neighbour_qids=np.array([1, 5]), neighbour_sources=np.array([3, 4]))
    dev = tmp_path / "dev.csv"
    dev.write_text(HEADER + "1,11,12,\"where are you  FROM?\",How old are you?,1\n"   # a neighbour pair, spacing and case aside
                            "2,13,14,Who wrote Hamlet?,Where are you going?,0\n"      # the other one, reversed
                            "3,15,16,Who wrote Hamlet?,How old are you?,0\n"          # both in train, not neighbours
                            "4,17,18,Is this new?,How old are you?,1\n")              # one question not in train
    tr = normalized_questions(load_pairs(train))
    pairs = neighbour_pairs(tr, teacher)
    assert len(pairs) == 2
    rows = leak_counts(load_pairs(dev), tr, pairs)
    assert rows == [{"label": 1, "pairs": 2, "both_in_train": 1, "teacher_neighbours": 1},
                    {"label": 0, "pairs": 2, "both_in_train": 2, "teacher_neighbours": 1}]


def test_a_teacher_without_neighbours_has_no_pairs(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text(HEADER + "1,1,2,How old are you?,What is your age?,1\n")
    teacher = tmp_path / "t.npz"
    np.savez(teacher, qids=np.array([1, 2]))
    assert neighbour_pairs(normalized_questions(load_pairs(train)), teacher) == set()
