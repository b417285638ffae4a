"""The pair head's text features compiled with numba, for long-lived processes (the server, the
benchmarks) and large batches: one loop nest per pair instead of some fifty numpy calls per batch.

The numbers are `TextFeaturizer._batch`'s (the same formulas, feature by feature; word cosines
summed in any order, so they agree to float32 rounding). Compiled code is cached on disk
(numba `cache=True`), so only the first process on a machine compiles.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})
def _side(keys, idf, best, matched, start):  # pragma: no cover - compiled
    """One question's sums over its words (rows start .. start + len(best)): words outside the
    vocabulary, the idf sum and max of the words the other question lacks, the best-match sum
    weighted by idf, the idf sum, the worst best match, and the largest idf x (1 - best match)."""
    unknown = 0
    only_sum = only_max = weighted = w_sum = np.float32(0.0)
    worst, gap = np.float32(np.inf), np.float32(-np.inf)
    for t in range(len(best)):
        w = idf[start + t]
        unknown += int(keys[start + t] < 0)
        if not matched[t]:
            only_sum += w
            only_max = max(only_max, w)
        weighted += best[t] * w
        w_sum += w
        worst = min(worst, best[t])
        gap = max(gap, w * (np.float32(1.0) - best[t]))
    return unknown, only_sum, only_max, weighted, w_sum, worst, gap


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})  # sums in any order; inf kept
def pair_features(keys, idf, emb, stems, word_off, stem_off, lengths, pa, pb, out):  # pragma: no cover - compiled
    """out[i] = the TEXT_FEATURES of questions pa[i] and pb[i], for i < len(pa).

    Questions are stored one after another: question q's distinct words are rows word_off[q] ..
    word_off[q + 1] of keys (W,) int64, idf (W,) float32 and emb (W, E) float32 (unit rows), its
    distinct stem keys stems[stem_off[q] .. stem_off[q + 1]] (int64, never 0), and lengths[q] its
    word count with repeats. out (n, 15) float32 is written in full.
    """
    dim = emb.shape[1]
    for i in range(len(pa)):
        qa, qb = pa[i], pb[i]
        a0, a1, b0, b1 = word_off[qa], word_off[qa + 1], word_off[qb], word_off[qb + 1]
        na, nb = a1 - a0, b1 - b0
        for j in range(out.shape[1]):
            out[i, j] = 0.0
        if na == 0 or nb == 0:
            continue
        in_b = np.zeros(na, np.bool_)  # a's word occurs in b
        in_a = np.zeros(nb, np.bool_)
        best_a = np.full(na, -np.inf, np.float32)  # each word's best cosine with the other question's words
        best_b = np.full(nb, -np.inf, np.float32)
        for t in range(na):
            for u in range(nb):
                same = keys[a0 + t] == keys[b0 + u]
                if same:
                    in_b[t] = True
                    in_a[u] = True
                    s = np.float32(1.0)
                else:
                    s = np.float32(0.0)
                    for e in range(dim):
                        s += emb[a0 + t, e] * emb[b0 + u, e]
                    s = max(s, np.float32(0.0))  # numpy: max(cosine, same) with same = 0
                if s > best_a[t]:
                    best_a[t] = s
                if s > best_b[u]:
                    best_b[u] = s
        n_shared = shared_unk = 0
        idf_shared = np.float32(0.0)
        for t in range(na):
            if in_b[t]:
                n_shared += 1
                idf_shared += idf[a0 + t]
                shared_unk += int(keys[a0 + t] < 0)
        unk_a, only_a, max_a, weighted_a, sum_a, worst_a, gap_a = _side(keys, idf, best_a, in_b, a0)
        unk_b, only_b, max_b, weighted_b, sum_b, worst_b, gap_b = _side(keys, idf, best_b, in_a, b0)
        only_sum = only_a + only_b
        weighted, w_sum = weighted_a + weighted_b, sum_a + sum_b
        only_max, worst, gap = max(max_a, max_b), min(worst_a, worst_b), max(gap_a, gap_b)
        out[i, 0] = n_shared / max(1, na + nb - n_shared)
        out[i, 1] = idf_shared / max(np.float32(1e-6), idf_shared + only_sum)
        out[i, 2] = only_max
        out[i, 3] = only_sum
        out[i, 4] = min(na - n_shared, nb - n_shared)
        out[i, 5] = max(na - n_shared, nb - n_shared)
        s0, s1, r0, r1 = stem_off[qa], stem_off[qa + 1], stem_off[qb], stem_off[qb + 1]
        s_shared = 0
        for t in range(s0, s1):
            for u in range(r0, r1):
                if stems[t] == stems[u]:
                    s_shared += 1
                    break
        out[i, 6] = s_shared / max(1, (s1 - s0) + (r1 - r0) - s_shared)
        out[i, 7] = weighted / max(np.float32(1e-6), w_sum)
        out[i, 8] = worst
        out[i, 9] = gap
        out[i, 10] = unk_a + unk_b - 2 * shared_unk
        out[i, 11] = shared_unk
        out[i, 12] = 1.0 if keys[a0] == keys[b0] else 0.0
        la, lb = np.log1p(lengths[qa]), np.log1p(lengths[qb])
        out[i, 13] = abs(la - lb)
        out[i, 14] = min(la, lb)
    return out
