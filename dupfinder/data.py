"""Reading question files, duplicate clusters, cluster-aware splits and the pair-batch generator.

Real files have invalid UTF-8, empty questions and odd quoting: such rows are repaired or skipped
and counted in a `ReadReport`, never a crash.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .text import normalize

csv.field_size_limit(2**31 - 1)  # Quora has questions of many kilobytes


@dataclass
class ReadReport:
    """What reading a file did: rows read, kept, and skipped or repaired by reason (rows), and the
    bytes fixed while decoding, by kind (bytes, not rows: one row can hold several)."""

    path: str
    rows: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    bytes_fixed: Counter = field(default_factory=Counter)  # "invalid UTF-8" (replaced by U+FFFD), "NUL" (removed)

    def summary(self) -> str:
        parts = [f"{self.path}: {self.rows:,} rows, {self.kept:,} kept"]
        parts += [f"{n:,} skipped ({why})" for why, n in sorted(self.skipped.items())]
        parts += [f"{n:,} repaired ({why})" for why, n in sorted(self.repaired.items())]
        for kind, done in (("invalid UTF-8", "replaced"), ("NUL", "removed")):
            if n := self.bytes_fixed.get(kind):
                parts.append(f"{n:,} {kind} byte{'s' if n > 1 else ''} {done}")
        return ", ".join(parts)


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip; `-` reads stdin."""
    name = str(path)
    try:
        if name == "-":
            raw = sys.stdin.buffer.read()
        else:
            raw = Path(name).read_bytes()
    except FileNotFoundError:
        raise InputError(f"file not found: {name}") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a directory, not a file") from None
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise InputError(f"{name} is not a valid gzip file: {e}") from None
    return raw


def decode(raw: bytes, report: ReadReport) -> str:
    """UTF-8 (with or without BOM); invalid bytes become U+FFFD and are counted."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("utf-8-sig", errors="replace")
        report.bytes_fixed["invalid UTF-8"] += text.count("\ufffd")
    if "\x00" in text:
        report.bytes_fixed["NUL"] += text.count("\x00")
        text = text.replace("\x00", "")
    return text


def sniff_delimiter(name: str, first_line: str) -> str:
    base = name.lower().removesuffix(".gz")
    if base.endswith(".tsv") or base.endswith(".tab"):
        return "\t"
    if base.endswith(".csv"):
        return ","
    return "\t" if first_line.count("\t") > first_line.count(",") else ","


def read_table(path: str | Path, report: ReadReport | None = None) -> tuple[list[str], list[list[str]], ReadReport]:
    """Header and rows of a CSV/TSV (optionally gzipped) file.

    Rows whose field count differs from the header's are skipped and counted.
    """
    name = str(path)
    report = report or ReadReport(name)
    text = decode(read_bytes(path), report)
    if not text.strip():
        raise InputError(f"{name} is empty")
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(name, first_line))
    try:
        header = [h.strip() for h in next(reader)]
        rows = []
        width = len(header)
        for row in reader:
            if not row:
                continue
            report.rows += 1
            if len(row) != width:
                report.skipped["wrong number of fields"] += 1
                continue
            rows.append(row)
    except csv.Error as e:
        raise InputError(f"{name} is not a readable CSV/TSV file: {e}") from None
    return header, rows, report


def pick_column(header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, option: str) -> int | None:
    """Index of the column named `wanted` (required if given), else the first of `candidates` present."""
    lowered = [h.lower() for h in header]
    if wanted is not None:
        if wanted in header:
            return header.index(wanted)
        if wanted.lower() in lowered:
            return lowered.index(wanted.lower())
        raise InputError(f"column '{wanted}' not found; columns are: {', '.join(header)}. Use {option} NAME")
    for c in candidates:
        if c in lowered:
            return lowered.index(c)
    return None


def require_column(header: list[str], wanted: str | None, default: str, option: str) -> int:
    idx = pick_column(header, wanted, (default,), default, option)
    if idx is None:
        raise InputError(f"column '{default}' not found; columns are: {', '.join(header)}. Use {option} NAME")
    return idx


@dataclass
class PairColumns:
    """Column names of a pairs file; qid columns are optional (ids then come from the text)."""

    question1: str | None = None  # default 'question1'
    question2: str | None = None  # default 'question2'
    label: str | None = None  # default 'is_duplicate'
    qid1: str | None = None  # default 'qid1'
    qid2: str | None = None  # default 'qid2'


@dataclass
class Pairs:
    """Question pairs: parallel arrays, one entry per kept row."""

    qid1: np.ndarray  # (n,) int64
    qid2: np.ndarray  # (n,) int64
    label: np.ndarray  # (n,) int8, 1 = duplicate
    questions: dict[int, str]  # qid -> text
    report: ReadReport

    def __len__(self) -> int:
        return len(self.label)

    def texts(self, side: int) -> list[str]:
        qids = self.qid1 if side == 1 else self.qid2
        return [self.questions[q] for q in qids.tolist()]

    def subset(self, idx: np.ndarray) -> "Pairs":
        return Pairs(self.qid1[idx], self.qid2[idx], self.label[idx], self.questions, self.report)


_LABELS = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0, "yes": 1, "no": 0}


def load_pairs(path: str | Path, columns: PairColumns | None = None, need_label: bool = True) -> Pairs:
    """Read a pairs file (`id,qid1,qid2,question1,question2,is_duplicate`; .csv, .tsv, .gz, `-`).

    Rows with an empty question or an unreadable label are skipped and counted. When the file has
    no qid columns, questions with the same normalized text share an id.
    """
    columns = columns or PairColumns()
    header, rows, report = read_table(path)
    i1 = require_column(header, columns.question1, "question1", "--q1-column")
    i2 = require_column(header, columns.question2, "question2", "--q2-column")
    il = require_column(header, columns.label, "is_duplicate", "--label-column") if need_label else None
    iq1 = pick_column(header, columns.qid1, ("qid1",), "qid1", "--qid1-column")
    iq2 = pick_column(header, columns.qid2, ("qid2",), "qid2", "--qid2-column")
    use_qids = iq1 is not None and iq2 is not None

    questions: dict[int, str] = {}
    by_text: dict[str, int] = {}
    qid1, qid2, labels = [], [], []

    def qid_for(text: str, raw_qid: str | None) -> int | None:
        if use_qids:
            try:
                q = int(float(raw_qid))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return None
        else:
            key = normalize(text)
            q = by_text.setdefault(key, len(by_text))
        questions.setdefault(q, text)
        return q

    for row in rows:
        t1, t2 = row[i1].strip(), row[i2].strip()
        if not t1 or not t2:
            report.skipped["empty question"] += 1
            continue
        if il is not None:
            lab = _LABELS.get(row[il].strip().lower())
            if lab is None:
                report.skipped["unreadable label"] += 1
                continue
        else:
            lab = 0
        a = qid_for(t1, row[iq1] if use_qids else None)
        b = qid_for(t2, row[iq2] if use_qids else None)
        if a is None or b is None:
            report.skipped["unreadable qid"] += 1
            continue
        if a == b:
            report.skipped["same question twice"] += 1
            continue
        qid1.append(a)
        qid2.append(b)
        labels.append(lab)
    report.kept = len(labels)
    if not labels:
        raise InputError(f"{path} has no usable question pairs ({report.summary()})")
    return Pairs(
        np.asarray(qid1, dtype=np.int64),
        np.asarray(qid2, dtype=np.int64),
        np.asarray(labels, dtype=np.int8),
        questions,
        report,
    )


def duplicate_clusters(pairs: Pairs) -> dict[int, int]:
    """qid -> cluster id: connected components of the duplicate edges (union-find)."""
    parent: dict[int, int] = {q: q for q in pairs.questions}

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    dup = pairs.label == 1
    for a, b in zip(pairs.qid1[dup].tolist(), pairs.qid2[dup].tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {q: find(q) for q in parent}


def cluster_positives(pairs: Pairs, clusters: dict[int, int], seed: int, per_labeled: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Unlabeled duplicate pairs implied by the clusters: (qid1, qid2) arrays.

    If a = b and b = c are labeled, a = c is a duplicate too, but no row says so. Each cluster of
    three or more questions contributes up to `per_labeled` x its labeled duplicate pairs of these
    implied pairs, drawn at random (deterministic for `seed`), so a big cluster cannot crowd out
    the small ones.
    """
    dup = pairs.label == 1
    members: dict[int, set[int]] = {}
    labeled: dict[int, set[tuple[int, int]]] = {}
    for a, b in zip(pairs.qid1[dup].tolist(), pairs.qid2[dup].tolist()):
        c = clusters[a]
        members.setdefault(c, set()).update((a, b))
        labeled.setdefault(c, set()).add((min(a, b), max(a, b)))
    rng = np.random.default_rng([seed, 7])
    out1: list[int] = []
    out2: list[int] = []
    for c in sorted(members):
        qs = sorted(members[c])
        n, seen = len(qs), labeled[c]
        if n < 3 or len(seen) == n * (n - 1) // 2:
            continue
        want = min(int(round(per_labeled * len(seen))), n * (n - 1) // 2 - len(seen))
        i, j = np.triu_indices(n, 1)
        keep = [k for k in rng.permutation(len(i)).tolist() if (qs[i[k]], qs[j[k]]) not in seen][:want]
        out1 += [qs[i[k]] for k in keep]
        out2 += [qs[j[k]] for k in keep]
    return np.asarray(out1, dtype=np.int64), np.asarray(out2, dtype=np.int64)


class HardNegatives:
    """Questions labeled as not duplicates of a duplicate cluster, to serve as its hard negatives.

    A row "x is not a duplicate of y" holds for every member of x's cluster (x' = x and x != y, so
    x' != y), so the partners are pooled per cluster. Rows inside one cluster contradict the
    clusters and are left out.
    """

    def __init__(self, pairs: Pairs, clusters: dict[int, int]):
        partners: dict[int, list[int]] = {}
        neg = pairs.label == 0
        for a, b in zip(pairs.qid1[neg].tolist(), pairs.qid2[neg].tolist()):
            ca, cb = clusters[a], clusters[b]
            if ca != cb:
                partners.setdefault(ca, []).append(b)
                partners.setdefault(cb, []).append(a)
        self.of_cluster = {c: np.unique(np.asarray(qs, dtype=np.int64)) for c, qs in partners.items()}

    def sample(self, anchor_clusters: list[int], rng: np.random.Generator) -> np.ndarray:
        """One random hard negative (a question id) per anchor cluster that has any."""
        out = [qs[rng.integers(len(qs))] for qs in map(self.of_cluster.get, anchor_clusters) if qs is not None]
        return np.asarray(out, dtype=np.int64)


class OverlapBias:
    """How often a pairs file calls a pair a duplicate, given only how many words its questions share.

    Quora's labels lean on word overlap: of the training pairs whose questions share under 10% of
    their words (Jaccard), 1.4% are duplicates; of those sharing half, 56%. An encoder can learn
    that shortcut and call "Where are you from?" / "Where are you going?" (overlap 0.6) a duplicate
    and "How old are you?" / "What is your age?" (overlap 0) not. Example reweighting against a
    known bias counters it: a labeled pair weighs 1 - P(its label | its overlap), so the pairs the
    shortcut gets wrong (duplicates in other words, non-duplicates in the same words) count most.

    P(duplicate | overlap) is counted in `bins` equal bins of Jaccard overlap over word tokens
    (punctuation and unknown words left out), with add-one smoothing. Weights are scaled to average
    1 over each label's pairs, so the loss keeps its scale; `strength` s blends them with 1.
    """

    def __init__(self, pairs: Pairs, tokens: dict[int, np.ndarray], is_word: np.ndarray, bins: int = 10):
        self.tokens, self.is_word, self.bins = tokens, is_word, bins
        at = self.bin_of(pairs.qid1, pairs.qid2)
        dup = pairs.label == 1
        counts = np.bincount(at, minlength=bins)
        self.p_duplicate = (np.bincount(at[dup], minlength=bins) + 1) / (counts + 2)  # (bins,)
        self.mean_dup = float((1 - self.p_duplicate[at[dup]]).mean()) if dup.any() else 1.0
        self.mean_neg = float(self.p_duplicate[at[~dup]].mean()) if (~dup).any() else 1.0

    def overlap(self, qid1: np.ndarray, qid2: np.ndarray) -> np.ndarray:
        """Jaccard overlap of the two questions' word sets, per pair; 0 where neither has a word."""
        out = np.zeros(len(qid1))
        for i, (a, b) in enumerate(zip(qid1.tolist(), qid2.tolist())):
            ta, tb = self.tokens[a], self.tokens[b]
            wa, wb = set(ta[self.is_word[ta]].tolist()), set(tb[self.is_word[tb]].tolist())
            union = len(wa | wb)
            out[i] = len(wa & wb) / union if union else 0.0
        return out

    def bin_of(self, qid1: np.ndarray, qid2: np.ndarray) -> np.ndarray:
        return np.minimum((self.overlap(qid1, qid2) * self.bins).astype(np.int64), self.bins - 1)

    def weights(self, qid1: np.ndarray, qid2: np.ndarray, duplicate: bool, strength: float = 1.0) -> np.ndarray:
        """Per-pair weights (n,) float32 for pairs all labeled `duplicate` (True) or not (False)."""
        p = self.p_duplicate[self.bin_of(qid1, qid2)]
        w = (1 - p) / self.mean_dup if duplicate else p / self.mean_neg
        return ((1 - strength) + strength * w).astype(np.float32)

    def table(self) -> str:
        cells = ", ".join(f"{i / self.bins:.1f}+: {p:.3f}" for i, p in enumerate(self.p_duplicate))
        return f"duplicate rate by word overlap: {cells}"


def split_by_cluster(
    pairs: Pairs, clusters: dict[int, int], val_fraction: float, seed: int, max_cluster: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation pair indices such that no question (nor its cluster) is on both sides.

    Seed pairs are drawn at random and both their clusters go to validation until about
    `val_fraction` of the pairs are in it; pairs that straddle the two sides are dropped. Drawing
    pairs (not single clusters) keeps labeled non-duplicates in the validation split; clusters of
    more than `max_cluster` questions stay in training, or a few of them would fill the split.
    """
    rng = np.random.default_rng(seed)
    c1 = np.fromiter((clusters[q] for q in pairs.qid1.tolist()), dtype=np.int64, count=len(pairs))
    c2 = np.fromiter((clusters[q] for q in pairs.qid2.tolist()), dtype=np.int64, count=len(pairs))
    sizes = Counter(clusters.values())
    small = np.fromiter((sizes[a] <= max_cluster and sizes[b] <= max_cluster for a, b in zip(c1.tolist(), c2.tolist())), dtype=bool, count=len(pairs))
    target = int(round(val_fraction * len(pairs)))
    seeds = rng.permutation(np.flatnonzero(small))
    step = max(1, target // 20)
    in_val = np.zeros(len(pairs), dtype=bool)
    val_clusters = np.zeros(0, dtype=np.int64)
    for pos in range(0, len(seeds), step):
        if in_val.sum() >= target:
            break
        chunk = seeds[pos : pos + step]
        val_clusters = np.union1d(val_clusters, np.r_[c1[chunk], c2[chunk]])
        in_val = np.isin(c1, val_clusters) & np.isin(c2, val_clusters)
    straddle = np.isin(c1, val_clusters) ^ np.isin(c2, val_clusters)
    return np.flatnonzero(~in_val & ~straddle), np.flatnonzero(in_val)


class PairBatcher:
    """Batches of duplicate pairs in which no two pairs share a duplicate cluster.

    Every off-diagonal entry of S = V1 V2^T is then a true negative. The order is reshuffled each
    epoch and is a pure function of (seed, epoch), so a resumed run sees the same batches.
    """

    def __init__(self, cluster_of_pair: np.ndarray, batch_size: int, seed: int):
        if batch_size < 2:
            raise ValueError("batch_size must be at least 2: the other pairs of a batch are the negatives")
        self.cluster = np.asarray(cluster_of_pair, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of pair indices) of one epoch; the last incomplete batch is dropped."""
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.cluster)
        perm = rng.permutation(n)
        # each cluster's pairs are spread evenly over the epoch: the r-th of a cluster of n pairs
        # lands at a random point of the r-th n-th of the epoch, so big clusters rarely collide
        clusters = self.cluster[perm]
        by_cluster = np.argsort(clusters, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[by_cluster] = np.arange(n) - _group_starts(clusters[by_cluster])
        _, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
        order = perm[np.argsort((rank + rng.random(n)) / counts[inverse], kind="stable")]

        batches: list[np.ndarray] = []
        current: list[int] = []
        seen: set[int] = set()
        waiting: list[int] = []
        for i in order.tolist():
            c = int(self.cluster[i])
            if c in seen:
                waiting.append(i)
                continue
            current.append(i)
            seen.add(c)
            if len(current) == self.batch_size:
                batches.append(np.asarray(current, dtype=np.int64))
                current, seen = [], set()
                still = []
                for j in waiting:  # pairs deferred from the full batch start the next one
                    cj = int(self.cluster[j])
                    if cj in seen or len(current) == self.batch_size:
                        still.append(j)
                    else:
                        current.append(j)
                        seen.add(cj)
                waiting = still
        return batches


def _group_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """For a sorted array of group labels, the index at which each element's group starts."""
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    return np.repeat(starts, np.diff(np.r_[starts, len(sorted_groups)]))


TABLE_SUFFIXES = (".csv", ".tsv", ".tab")
TEXT_SUFFIXES = (".txt", ".text")
TEXT_COLUMNS = ("question", "text", "title", "body")
ID_COLUMNS = ("id", "qid", "question_id")


@dataclass
class Questions:
    """Questions read from a file, one entry per input row, in input order.

    Rows with empty text stay (`ok` is False for them) so batch jobs can write every row back;
    `header` and `rows` are the file's own columns (a synthesized `id,question` for pairs files and
    plain text).
    """

    ids: list[str | None]  # the user's id for each row; None where the file has no id column
    texts: list[str]
    ok: np.ndarray  # (n,) bool: text is non-empty
    header: list[str]
    rows: list[list[str]]
    report: ReadReport
    kind: str  # "pairs", "table" or "lines"

    def __len__(self) -> int:
        return len(self.texts)


def file_kind(path: str | Path) -> str:
    """'table', 'lines', or 'sniff' (stdin: decided from the first line) from the file name."""
    name = str(path).lower().removesuffix(".gz")
    if str(path) == "-":
        return "sniff"
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    if name.endswith(TEXT_SUFFIXES):
        return "lines"
    raise InputError(
        f"unknown file type: {path}; use a .csv, .tsv or .txt file (optionally .gz), or - for stdin"
    )


def load_questions(path: str | Path, text_column: str | None = None, id_column: str | None = None) -> Questions:
    """Read questions from a Quora pairs file, a CSV/TSV with a question column, or plain text.

    A table's text column is `--text-column`, else the first of question/text/title/body; its id
    column is `--id-column`, else id/qid/question_id if present. A pairs file gives its unique
    questions keyed by qid1/qid2. Plain text is one question per line.
    """
    name = str(path)
    report = ReadReport(name)
    kind = file_kind(path)
    if kind != "lines":
        text = _decode_text(read_bytes(path), report)
        if not text.strip():
            raise InputError(f"{name} is empty")
        first = text.split("\n", 1)[0]
        if kind == "sniff":
            cells = [c.strip().lower() for c in first.replace("\t", ",").split(",")]
            looks_like_table = text_column is not None or any(c in cells for c in (*TEXT_COLUMNS, "question1"))
            kind = "table" if looks_like_table else "lines"
        if kind == "table":
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(name, first))
            return _questions_from_table(reader, name, report, text_column, id_column)
        return _questions_from_lines(text, report)
    return _questions_from_lines(_decode_text(read_bytes(path), report), report)


def _decode_text(raw: bytes, report: ReadReport) -> str:
    """`decode`, refusing files that are mostly not UTF-8 text (a binary or wrongly encoded file)."""
    text = decode(raw, report)
    bad = report.bytes_fixed.get("invalid UTF-8", 0) + report.bytes_fixed.get("NUL", 0)
    if bad > 0.05 * max(len(text), 1):
        raise InputError(
            f"{report.path} does not look like UTF-8 text ({bad:,} undecodable bytes); convert it to UTF-8 first"
        )
    return text


def _questions_from_lines(text: str, report: ReadReport) -> Questions:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"{report.path} is empty")
    texts = [line.strip() for line in lines]
    ok = np.fromiter((bool(t) for t in texts), dtype=bool, count=len(texts))
    report.rows = len(texts)
    report.kept = int(ok.sum())
    if (~ok).any():
        report.skipped["empty question"] += int((~ok).sum())
    return Questions([None] * len(texts), texts, ok, ["question"], [[t] for t in texts], report, "lines")


def _questions_from_table(reader, name: str, report: ReadReport, text_column: str | None, id_column: str | None) -> Questions:
    try:
        header = [h.strip() for h in next(reader)]
        raw_rows = [r for r in reader if r]
    except csv.Error as e:
        raise InputError(f"{name} is not a readable CSV/TSV file: {e}") from None
    lowered = [h.lower() for h in header]
    if text_column is None and "question1" in lowered and "question2" in lowered:
        return _questions_from_pairs(header, raw_rows, report)
    it = pick_column(header, text_column, TEXT_COLUMNS, "text", "--text-column")
    if it is None:
        raise InputError(
            f"no question column in {name}; columns are: {', '.join(header)}. Use --text-column NAME"
        )
    iid = pick_column(header, id_column, ID_COLUMNS, "id", "--id-column")
    ids, texts, rows = [], [], []
    width = len(header)
    for row in raw_rows:
        report.rows += 1
        if len(row) != width:
            # a short or long row is kept for batch output, padded or cut to the header's width
            report.repaired["wrong number of fields"] += 1
            row = (row + [""] * width)[:width]
        rows.append(row)
        texts.append(row[it].strip())
        ids.append(row[iid].strip() or None if iid is not None else None)
    ok = np.fromiter((bool(t) for t in texts), dtype=bool, count=len(texts))
    report.kept = int(ok.sum())
    if (~ok).any():
        report.skipped["empty question"] += int((~ok).sum())
    if not rows:
        raise InputError(f"{name} has a header but no rows")
    return Questions(ids, texts, ok, header, rows, report, "table")


def _questions_from_pairs(header: list[str], raw_rows: list[list[str]], report: ReadReport) -> Questions:
    lowered = [h.lower() for h in header]
    i1, i2 = lowered.index("question1"), lowered.index("question2")
    q1 = lowered.index("qid1") if "qid1" in lowered else None
    q2 = lowered.index("qid2") if "qid2" in lowered else None
    seen: dict[str, int] = {}
    ids, texts = [], []
    for row in raw_rows:
        report.rows += 1
        if len(row) != len(header):
            report.skipped["wrong number of fields"] += 1
            continue
        for it, iq in ((i1, q1), (i2, q2)):
            text = row[it].strip()
            qid = row[iq].strip() if iq is not None else None
            key = qid if qid else "text:" + normalize(text)
            if not text:
                report.skipped["empty question"] += 1
                continue
            if key in seen:
                continue
            seen[key] = len(texts)
            ids.append(qid or None)
            texts.append(text)
    if not texts:
        raise InputError(f"{report.path} has no questions")
    report.kept = len(texts)
    ok = np.ones(len(texts), dtype=bool)
    return Questions(ids, texts, ok, ["id", "question"], [[i or "", t] for i, t in zip(ids, texts)], report, "pairs")
