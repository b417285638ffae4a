"""The dedup output: every input row back, in input order, with its cluster (and its match in a
store), the check that the input does not have those columns already, and the summary counts."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from dupfinder.dedup import DedupResult
from dupfinder.errors import InputError

ADDED_COLUMNS = ("cluster_id", "canonical_id", "is_canonical", "score")
AGAINST_COLUMNS = ("index_match_id", "index_match_score")


def summary(result: DedupResult, report) -> dict:
    """Counts for the user: rows read, skipped and why, clusters, duplicate rows (and index matches)."""
    done = result.cluster >= 0
    sizes = np.bincount(result.cluster[done]) if done.any() else np.zeros(0, np.int64)
    out = {
        "rows": int(len(result.cluster)),
        "rows_deduplicated": int(done.sum()),
        "rows_skipped": {why: int(n) for why, n in sorted(report.skipped.items())},
        "rows_repaired": {why: int(n) for why, n in sorted(report.repaired.items())},
        "bytes_fixed": {why: int(n) for why, n in sorted(report.bytes_fixed.items())},
        "clusters": int(len(sizes)),
        "clusters_with_duplicates": int((sizes > 1).sum()),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "duplicate_rows": int(done.sum() - len(sizes)),
    }
    if result.match is not None:
        out["rows_matching_index"] = int((result.match >= 0).sum())
    return out | result.stats


def check_columns(header: Sequence[str], against: bool) -> None:
    added = ADDED_COLUMNS + (AGAINST_COLUMNS if against else ())
    clash = [c for c in header if c in added]
    if clash:
        raise InputError(
            f"the input already has column(s) {', '.join(clash)}, which dedup adds; rename them or dedup the original file"
        )


def output_rows(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    ids: Sequence[str | None],
    result: DedupResult,
    keep_canonical: bool = False,
    match_labels: dict[int, str] | None = None,
) -> tuple[list[str], Iterable[list[str]]]:
    """Header and rows to write: every input row in input order with the added columns, or with
    `keep_canonical` only the canonical row of each cluster (rows with empty text are then left out).

    A row's id is its id column, else its 1-based row number. `match_labels` maps --against index
    ids to the ids shown for them.
    """
    with_match = result.match is not None
    out_header = list(header) + list(ADDED_COLUMNS) + (list(AGAINST_COLUMNS) if with_match else [])

    def label(i: int) -> str:
        return ids[i] if ids[i] is not None else str(i + 1)

    def gen() -> Iterable[list[str]]:
        canonical, cluster, score = result.canonical.tolist(), result.cluster.tolist(), result.score.tolist()
        for i, row in enumerate(rows):
            c = canonical[i]
            if keep_canonical and c != i:
                continue
            if c < 0:
                added = ["", "", "", ""]
            else:
                added = [str(cluster[i]), label(c), "1" if c == i else "0", f"{score[i]:.4f}"]
            if with_match:
                m = int(result.match[i])
                added += [match_labels.get(m, str(m)), f"{float(result.match_score[i]):.4f}"] if m >= 0 else ["", ""]
            yield list(row) + added

    return out_header, gen()
