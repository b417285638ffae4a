"""JSON lines wherever a question or pairs file is read: one object per line, keys as columns."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.errors import InputError
from dupfinder.io import load_pairs, load_questions, read_table

PAIRS = [
    {"question1": "How old are you?", "question2": "What is your age?", "is_duplicate": 1},
    {"question1": "Where are you from?", "question2": "Where are you going?", "is_duplicate": False},
    {"question1": "How do I learn Python?", "question2": "What is the best way to learn Python?", "is_duplicate": "1"},
]


def write_lines(path, objects, extra: str = ""):
    path.write_text("".join(json.dumps(o) + "\n" for o in objects) + extra, encoding="utf-8")
    return path


def test_pairs_from_json_lines_with_labels_of_any_json_kind(tmp_path):
    pairs = load_pairs(write_lines(tmp_path / "p.jsonl", PAIRS))
    assert pairs.label.tolist() == [1, 0, 1]
    assert pairs.texts(1)[0] == "How old are you?" and pairs.texts(2)[2] == "What is the best way to learn Python?"


def test_bad_lines_are_skipped_and_counted_keys_may_differ(tmp_path):
    path = write_lines(tmp_path / "q.ndjson", [{"id": 7, "question": "How old are you?"}, {"question": "Why?", "lang": "en"}],
                       extra="not json\n[1, 2]\n\n")
    header, rows, report = read_table(path)
    assert header == ["id", "question", "lang"]
    assert rows == [["7", "How old are you?", ""], ["", "Why?", "en"]]
    assert report.rows == 4 and dict(report.skipped) == {"not valid JSON": 1, "not a JSON object": 1}
    questions = load_questions(path)
    assert questions.texts == ["How old are you?", "Why?"] and questions.ids == ["7", None]  # an empty id is no id


def test_gzipped_json_lines_and_stdin_are_recognised(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(o) + "\n" for o in PAIRS).encode()))
    assert len(load_pairs(path)) == 3
    stdin = "".join(json.dumps({"question": o["question1"]}) + "\n" for o in PAIRS)
    result = CliRunner().invoke(cli, ["dedup", "-", "-o", str(tmp_path / "out.csv")], input=stdin)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.csv").read_text().splitlines()[1].startswith("How old are you?,")


def test_a_file_without_objects_is_a_one_line_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("not json\n")
    with pytest.raises(InputError, match="no line is a JSON object with keys"):
        read_table(path)
    result = CliRunner().invoke(cli, ["similarity", "--file", str(path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "no line is a JSON object with keys" in result.output


def test_similarity_file_prints_one_json_line_per_pair(tmp_path, tiny_model):
    path = write_lines(tmp_path / "p.jsonl", [{k: v for k, v in o.items() if k != "is_duplicate"} for o in PAIRS])
    result = CliRunner().invoke(cli, ["similarity", "--file", str(path), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3 and all({"score", "duplicate", "threshold"} <= line.keys() for line in lines)
