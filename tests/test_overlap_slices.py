import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "research"))
from overlap_slices import word_overlap, slice_rows  # noqa: E402


def test_word_overlap_counts_words_not_punctuation():
    a = ["How old are you?", "Where are you from?", "?", "Is it?"]
    b = ["What is your age?", "Where are you going?", "!", "Is it, really?"]
    np.testing.assert_allclose(word_overlap(a, b), [0.0, 3 / 5, 0.0, 2 / 3])


def test_slices_by_hand():
    overlap = np.array([0.1, 0.1, 0.1, 0.5, 0.5, 0.7, 0.7, 1.0])
    labels = np.array([1, 0, 0, 1, 0, 1, 0, 0])
    scores = np.array([0.7, 0.2, 0.65, 0.3, 0.9, 0.8, 0.9, 0.95])
    rows = slice_rows(scores, labels, overlap, threshold=0.6)
    low, mid, high = rows[0], rows[2], rows[3]
    assert (low["duplicates"], low["non_duplicates"]) == (1, 2)
    assert low["recall"] == 1.0 and low["false_duplicate_rate"] == 0.5
    assert low["roc_auc"] == 1.0  # the duplicate outscores both non-duplicates
    assert mid["recall"] == 0.0 and mid["false_duplicate_rate"] == 1.0 and mid["roc_auc"] == 0.0
    assert high["recall"] == 1.0 and high["false_duplicate_rate"] == 1.0 and high["roc_auc"] == 0.0
    assert rows[1]["duplicates"] == 0 and rows[1]["recall"] is None and rows[1]["roc_auc"] is None
