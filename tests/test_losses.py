import math

import pytest
import torch

from dupfinder.train.losses import in_batch_softmax_loss, labeled_negative_loss, triplet_loss_hard

# The worked example of the course loss: rows are v1, columns v2.
S = torch.tensor([
    [0.9, -0.8, 0.3, -0.5],
    [-0.8, 0.5, 0.1, -0.2],
    [0.3, 0.1, 0.7, -0.8],
    [-0.5, -0.2, -0.8, 1.0],
])


def test_issue_matrix_at_default_margin_is_zero():
    # every row's positive beats both its mean negative and its closest negative by more than 0.25:
    # row 3 is the tightest, closest 0.3 - pos 0.7 + 0.25 = -0.15
    assert triplet_loss_hard(S, margin=0.25).item() == pytest.approx(0.0)


def test_issue_matrix_by_hand_at_margin_one():
    # row: mean_neg, closest_neg (largest off-diagonal below the diagonal)
    # 1: (-0.8+0.3-0.5)/3 = -1/3, 0.3 -> max(-1/3-0.9+1, 0) + max(0.3-0.9+1, 0) = 0 + 0.4
    # 2: (-0.8+0.1-0.2)/3 = -0.3, 0.1 -> 0.2 + 0.6
    # 3: (0.3+0.1-0.8)/3 = -2/15, 0.3 -> (1-0.7-2/15) + 0.6
    # 4: (-0.5-0.2-0.8)/3 = -0.5, -0.2 -> 0 + max(-0.2-1+1, 0) = 0
    per_row = torch.tensor([0.4, 0.8, 1 - 0.7 - 2 / 15 + 0.6, 0.0])
    got = triplet_loss_hard(S, margin=1.0, reduction="none")
    torch.testing.assert_close(got, per_row)
    assert triplet_loss_hard(S, margin=1.0).item() == pytest.approx(per_row.sum().item())
    assert triplet_loss_hard(S, margin=1.0, reduction="mean").item() == pytest.approx(per_row.mean().item())


def test_row_with_no_negative_below_the_positive():
    # row 1's positive (-0.9) is below both off-diagonals: it has no closest negative, only the mean term
    sim = torch.tensor([[-0.9, 0.2, 0.4], [0.1, 0.8, -0.3], [0.0, 0.5, 0.6]])
    got = triplet_loss_hard(sim, margin=0.25, reduction="none")
    row1 = (0.2 + 0.4) / 2 + 0.9 + 0.25  # mean term only
    row2 = max((0.1 - 0.3) / 2 - 0.8 + 0.25, 0) + max(0.1 - 0.8 + 0.25, 0)
    row3 = max((0.0 + 0.5) / 2 - 0.6 + 0.25, 0) + max(0.5 - 0.6 + 0.25, 0)
    torch.testing.assert_close(got, torch.tensor([row1, row2, row3]))


def test_ties_with_the_positive_are_not_closest_negatives():
    sim = torch.tensor([[0.5, 0.5], [0.1, 0.5]])
    got = triplet_loss_hard(sim, margin=0.25, reduction="none")
    # row 1: the only negative equals the positive, so no closest negative; mean term 0.5-0.5+0.25
    torch.testing.assert_close(got, torch.tensor([0.25, 0.0 + max(0.1 - 0.5 + 0.25, 0)]))


def test_gradient_flows_to_positive_and_chosen_negatives():
    sim = S.clone().requires_grad_(True)
    triplet_loss_hard(sim, margin=1.0).backward()
    # row 1: only the closest term is active: d/dS[0,2] = 1, d/dS[0,0] = -1, other negatives 0
    torch.testing.assert_close(sim.grad[0], torch.tensor([-1.0, 0.0, 1.0, 0.0]))
    # row 4 contributes nothing
    torch.testing.assert_close(sim.grad[3], torch.zeros(4))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        triplet_loss_hard(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        triplet_loss_hard(torch.zeros(1, 1))
    with pytest.raises(ValueError):
        triplet_loss_hard(S, reduction="max")


def test_labeled_negative_loss_by_hand():
    pos = torch.tensor([0.9, 0.5])
    neg = torch.tensor([0.8, 0.1])
    # gaps relu(neg - pos + 0.25): [[0.15, 0], [0.55, 0]] -> row means [0.075, 0.275] -> mean 0.175
    assert labeled_negative_loss(pos, neg, margin=0.25).item() == pytest.approx(0.175)
    torch.testing.assert_close(labeled_negative_loss(pos, neg, margin=0.25, reduction="none"), torch.tensor([0.075, 0.275]))


def test_in_batch_softmax_loss_by_hand():
    # row i: log(sum_j exp(s * S[i, j])) - s * S[i, i], at scale s = 2
    rows = S.tolist()
    per_row = [math.log(sum(math.exp(2 * x) for x in row)) - 2 * row[i] for i, row in enumerate(rows)]
    got = in_batch_softmax_loss(S, scale=2.0, reduction="none")
    torch.testing.assert_close(got, torch.tensor(per_row))
    assert in_batch_softmax_loss(S, scale=2.0).item() == pytest.approx(sum(per_row) / 4)


def test_in_batch_softmax_loss_pushes_every_outranking_negative():
    # row 1's positive (0.1) is outranked by both negatives: both get a positive gradient, the
    # higher one more, and the positive a negative one (the triplet loss has no closest negative
    # in this row, and its mean term pushes both negatives alike)
    sim = torch.tensor([[0.1, 0.9, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    in_batch_softmax_loss(sim, scale=5.0, reduction="sum").backward()
    g = sim.grad[0]
    assert g[0] < 0 < g[2] < g[1]
    with pytest.raises(ValueError):
        in_batch_softmax_loss(torch.zeros(3, 2))  # fewer candidates than anchors


def test_in_batch_softmax_loss_extra_columns_and_masks():
    # an extra column is one more negative for every row; -inf takes it out of a row
    extra = torch.tensor([[0.6], [float("-inf")], [0.2], [0.0]])
    got = in_batch_softmax_loss(torch.cat([S, extra], 1), scale=2.0, reduction="none")
    want = [math.log(sum(math.exp(2 * x) for x in row + ([e] if e > -1 else []))) - 2 * row[i]
            for i, (row, e) in enumerate(zip(S.tolist(), extra[:, 0].tolist()))]
    torch.testing.assert_close(got, torch.tensor(want))
    assert got[1] == pytest.approx(in_batch_softmax_loss(S, scale=2.0, reduction="none")[1].item())
