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


def labeled_negative_loss(pos: torch.Tensor, neg: torch.Tensor, margin: float = 0.25, reduction: str = "mean",
                          neg_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Every labeled non-duplicate pair should score at least `margin` below every duplicate pair.

    pos (P,) cosines of duplicate pairs, neg (N,) cosines of labeled non-duplicate pairs. These are
    the hard negatives the in-batch loss never sees (questions that look alike but differ), and the
    term ranks pairs across rows, which is what a single threshold tau needs. `neg_weights` (N,)
    weighs each non-duplicate's gaps; the value per duplicate (row) is the weighted mean over N.
    """
    gaps = torch.relu(neg[None, :] - pos[:, None] + margin)  # (P, N)
    if neg_weights is not None:
        gaps = gaps * neg_weights[None, :]
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


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, scale: float = 20.0, negatives_only: bool = False,
                 reduction: str = "mean") -> torch.Tensor:
    """KL divergence from a teacher's ranking of each row's candidates to the student's.

    student and teacher are (b, n) cosine matrices over the same anchors and candidates; each row
    becomes a distribution softmax(scale * S[i, :]), and row i's loss is KL(teacher_i || student_i).
    Where InfoNCE only says which candidate is the duplicate, this also passes on how the teacher
    orders the non-duplicates, which is what a small encoder can learn from a large one. With
    `negatives_only` (square matrices), the diagonal (each row's labeled duplicate) is left out of
    both distributions: the teacher then only orders the negatives and never argues with a label.
    """
    if student.ndim != 2 or student.shape != teacher.shape:
        raise ValueError(f"need two matrices of one shape, got {tuple(student.shape)} and {tuple(teacher.shape)}")
    if negatives_only:
        b = student.shape[0]
        if student.shape[1] != b or b < 3:
            raise ValueError(f"negatives_only needs square matrices of at least 3 x 3, got {tuple(student.shape)}")
        off = ~torch.eye(b, dtype=torch.bool, device=student.device)
        student, teacher = student[off].view(b, b - 1), teacher[off].view(b, b - 1)
    log_s = torch.log_softmax(scale * student, dim=1)
    log_t = torch.log_softmax(scale * teacher, dim=1)
    return reduce((log_t.exp() * (log_t - log_s)).sum(1), reduction)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean(values * weights), or the plain mean with no weights; weights average about 1."""
    return values.mean() if weights is None else (values * weights).mean()


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'sum', 'mean' or 'none', not {reduction!r}")
