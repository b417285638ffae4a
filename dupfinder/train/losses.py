"""Losses on similarity matrices: pure tensor in, tensor out."""

from __future__ import annotations

import torch


def triplet_loss_hard(sim: torch.Tensor, margin: float = 0.25, reduction: str = "sum") -> torch.Tensor:
    """Triplet loss with hard negative mining over S = V1 V2^T (rows anchors, columns candidates).

    Row i's positive is S[i, i]; every off-diagonal entry is a negative. Per row:
      mean_neg    = mean of the off-diagonal values
      closest_neg = the largest off-diagonal value still below S[i, i]
      L_i = max(mean_neg - pos + margin, 0) + max(closest_neg - pos + margin, 0)
    A row with no off-diagonal value below its positive has no closest negative: that term is 0
    (its mean-negative term still applies, and the negatives above it push the mean up).
    """
    b = sim.shape[0]
    if sim.ndim != 2 or sim.shape[1] != b or b < 2:
        raise ValueError(f"need a square similarity matrix of at least 2 x 2, got {tuple(sim.shape)}")
    pos = sim.diagonal()  # (B,)
    off = ~torch.eye(b, dtype=torch.bool, device=sim.device)  # (B, B)
    mean_neg = (sim * off).sum(1) / (b - 1)  # (B,)
    below = off & (sim < pos[:, None])  # (B, B)
    # cosines are >= -1, so -2 never wins the max where a real candidate exists
    closest_neg = sim.masked_fill(~below, -2.0).amax(1)  # (B,)
    loss_mean = torch.relu(mean_neg - pos + margin)
    loss_closest = torch.relu(closest_neg - pos + margin) * below.any(1)
    return reduce(loss_mean + loss_closest, reduction)


def labeled_negative_loss(pos: torch.Tensor, neg: torch.Tensor, margin: float = 0.25, reduction: str = "mean") -> torch.Tensor:
    """Every labeled non-duplicate pair should score at least `margin` below every duplicate pair.

    pos (P,) cosines of duplicate pairs, neg (N,) cosines of labeled non-duplicate pairs. These are
    the hard negatives the in-batch loss never sees (questions that look alike but differ), and the
    term ranks pairs across rows, which is what a single threshold tau needs. The value per
    duplicate (row) is the mean over N.
    """
    gaps = torch.relu(neg[None, :] - pos[:, None] + margin)  # (P, N)
    return reduce(gaps.mean(1), reduction)


def in_batch_softmax_loss(sim: torch.Tensor, scale: float = 20.0, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of each row's positive against all its in-batch candidates (InfoNCE).

    sim is (b, n) with n >= b: row i's positive is column i, every other column a negative (extra
    columns past b are added negatives, such as hard negatives; -inf masks a column out of a row).
    Row i's logits are scale * S[i, :]. Unlike the triplet terms, every negative that outranks the
    positive gets a gradient in proportion to how far it outranks it, which is what ranking a
    corpus (nDCG, recall@k) needs.
    """
    b = sim.shape[0]
    if sim.ndim != 2 or sim.shape[1] < b or b < 2:
        raise ValueError(f"need a b x n similarity matrix with n >= b >= 2, got {tuple(sim.shape)}")
    target = torch.arange(b, device=sim.device)
    return reduce(torch.nn.functional.cross_entropy(scale * sim, target, reduction="none"), reduction)


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', not {reduction!r}")
