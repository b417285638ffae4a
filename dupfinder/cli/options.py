"""Options shared by several commands (decorator factories), and the small helpers commands share."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click


def model_option(f):
    return click.option(
        "--model", "model_dir", type=click.Path(path_type=Path), envvar="DUPFINDER_MODEL", default=None,
        help="Model directory (default: the model shipped with dupfinder; env DUPFINDER_MODEL).",
    )(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: all).")(f)


def threshold_option(f):
    return click.option(
        "--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
        help="Score at or above which two questions are duplicates: the head's probability, or the cosine under "
             "--verdict cosine (default: the model's calibrated threshold).",
    )(f)


def verdict_option(f):
    return click.option(
        "--verdict", "verdict", type=click.Choice(["auto", "head", "cosine"]), default="auto", show_default=True,
        help="Who decides duplicates: the model's verdict stage where it has one (auto: the pair head, with its "
             "interaction verifier on the pairs the head is unsure of), the pair head alone or an error (head), "
             "or the Siamese cosine against tau (cosine).",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(f)


def index_option(f):
    return click.option(
        "--index", "index_dir", type=str, default=None,
        help="Index directory (default: $DUPFINDER_INDEX, else $DUPFINDER_HOME/indexes/default, else ./indexes/default).",
    )(f)


def input_column_options(f):
    f = click.option("--id-column", default=None, help="Id column (or JSON key) of a CSV/TSV or JSON lines file (default: id, qid or question_id if present).")(f)
    return click.option("--text-column", default=None, help="Question column (or JSON key) of a CSV/TSV or JSON lines file (default: question, text, title or body).")(f)


def pair_columns_option(f):
    """--q1-column, --q2-column, --label-column, --qid1-column, --qid2-column, passed on as `columns`."""
    names = (("--q1-column", "question1", "the first question"), ("--q2-column", "question2", "the second question"),
             ("--label-column", "is_duplicate", "the 1/0 duplicate label"), ("--qid1-column", "qid1", "the first question's id"),
             ("--qid2-column", "qid2", "the second question's id"))

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from dupfinder.io import PairColumns

        values = [kwargs.pop(flag[2:].replace("-", "_")) for flag, _, _ in names]
        return f(*args, columns=PairColumns(*values), **kwargs)

    for flag, default, what in reversed(names):
        wrapper = click.option(flag, type=str, default=None, help=f"Pairs-file column of {what} (default: {default}).")(wrapper)
    return wrapper


def log(message: str) -> None:
    click.echo(message, err=True)


def progress(unit: str = "q"):
    """A progress-bar factory (total, label) -> bar on stderr, silent when stderr is not a terminal."""
    from dupfinder.progress import Progress

    return lambda total, label: Progress(total, label, unit=unit)


def check_out_dir(path: Path) -> None:
    """A model folder that can be created or written, checked before minutes of work: else a one-line error."""
    from dupfinder.atomic import nearest_existing

    parent = nearest_existing(path)
    if parent == path and not path.is_dir():
        raise click.ClickException(f"--out {path} is a file, not a folder")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise click.ClickException(f"cannot create or write {path}: {parent} is not a writable folder; choose another --out")


def read_stdin() -> str:
    """All of stdin, decoded as the file readers decode `-`: UTF-8 with or without BOM, invalid bytes replaced."""
    from dupfinder.io import ReadReport, decode, read_bytes

    return decode(read_bytes("-"), ReadReport("<stdin>"))


def read_stdin_question(param_hint: str) -> str:
    """A question given as `-`: the whole of stdin, stripped."""
    text = read_stdin().strip()
    if not text:
        raise click.BadParameter("stdin held no question", param_hint=param_hint)
    return text


def nonempty(question: str, param_hint: str, message: str = "the question must not be empty") -> str:
    if not question.strip():
        raise click.BadParameter(message, param_hint=param_hint)
    return question
