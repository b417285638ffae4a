"""The one reader of question and pair files (CSV/TSV/JSON lines/plain text, .gz, `-` for stdin)
and the writer of result tables.

Real files have invalid UTF-8, empty questions and odd quoting: such rows are repaired or skipped
and counted in a `ReadReport`, never a crash.
"""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dupfinder.errors import DupfinderError, InputError
from dupfinder.json_lines import SUFFIXES as JSON_SUFFIXES
from dupfinder.knn import UnionFind
from dupfinder.text import normalize

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
    """Header and rows of a CSV/TSV or JSON lines (optionally gzipped) file.

    Rows whose field count differs from the header's, and lines that are not JSON objects, are
    skipped and counted.
    """
    from dupfinder.json_lines import json_lines_table

    name = str(path)
    report = report or ReadReport(name)
    text = decode(read_bytes(path), report)
    if not text.strip():
        raise InputError(f"{name} is empty")
    if is_json_lines(name, text):
        header, rows = json_lines_table(text, report)
        report.rows += len(rows)
        return header, rows, report
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
    """qid -> cluster id (its smallest qid): connected components of the duplicate edges."""
    qids = np.asarray(sorted(pairs.questions), dtype=np.int64)
    sets = UnionFind(len(qids))
    dup = pairs.label == 1
    for a, b in zip(np.searchsorted(qids, pairs.qid1[dup]).tolist(), np.searchsorted(qids, pairs.qid2[dup]).tolist()):
        sets.union(a, b)
    return dict(zip(qids.tolist(), qids[sets.roots()].tolist()))


CSV_SUFFIXES = (".csv", ".tsv", ".tab")
TABLE_SUFFIXES = CSV_SUFFIXES + JSON_SUFFIXES
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


def is_json_lines(name: str, text: str) -> bool:
    """JSON lines by the file's name, or for a name of no known kind (stdin) by a first `{`."""
    base = name.lower().removesuffix(".gz")
    if base.endswith(JSON_SUFFIXES):
        return True
    return not base.endswith(CSV_SUFFIXES + TEXT_SUFFIXES) and text.lstrip()[:1] == "{"


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
        f"unknown file type: {path}; use a .csv, .tsv, .jsonl or .txt file (optionally .gz), or - for stdin"
    )


def load_questions(path: str | Path, text_column: str | None = None, id_column: str | None = None) -> Questions:
    """Read questions from a Quora pairs file, a CSV/TSV or JSON lines with a question column, or plain text.

    A table's text column is `--text-column`, else the first of question/text/title/body; its id
    column is `--id-column`, else id/qid/question_id if present. A pairs file gives its unique
    questions keyed by qid1/qid2. Plain text is one question per line.
    """
    from dupfinder.json_lines import json_lines_table

    name = str(path)
    report = ReadReport(name)
    kind = file_kind(path)
    if kind != "lines":
        text = _decode_text(read_bytes(path), report)
        if not text.strip():
            raise InputError(f"{name} is empty")
        first = text.split("\n", 1)[0]
        if is_json_lines(name, text):
            header, rows = json_lines_table(text, report)
            return _questions_from_table(iter([header, *rows]), name, report, text_column, id_column)
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


# ---------------------------------------------------------------- writing result tables


def check_output(path: str, force: bool) -> None:
    """Refuse, before any work, an output path that exists (unless `force`) or cannot be written."""
    if path == "-":
        return
    p = Path(path)
    if p.is_dir():
        raise DupfinderError(f"output {p} is a directory; give a file name")
    if p.exists() and not force:
        raise DupfinderError(f"output {p} already exists; use --force to overwrite it")
    parent = p.parent
    if not parent.is_dir():
        raise DupfinderError(f"cannot write {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DupfinderError(f"cannot write {p}: no permission to write in {parent}")


def write_table(path: str, header: Sequence[str], rows: Iterable[Sequence[str]], stdout=None) -> int:
    """Write CSV (TSV for .tsv/.tab, gzipped for .gz) to a temp file, then rename it over `path`.

    A failure or interruption leaves no partial output at `path`. `-` writes to `stdout`. Returns the rows written.
    """
    name = path.lower().removesuffix(".gz")
    delimiter = "\t" if name.endswith((".tsv", ".tab")) else ","
    if path == "-":
        return _write_csv(stdout, delimiter, header, rows)
    p = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise DupfinderError(f"cannot write {p}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as raw:
            stream = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.lower().endswith(".gz") else raw
            f = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            count = _write_csv(f, delimiter, header, rows)
            f.flush()
            f.detach()
            if stream is not raw:
                stream.close()  # writes the gzip trailer; the file itself stays open
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise DupfinderError(f"cannot write {p}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _write_csv(f, delimiter: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
