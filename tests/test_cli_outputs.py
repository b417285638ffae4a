"""What the commands' outputs promise: one threshold in force, the same in every command (also after
`calibrate --write`); `-` reads a question from stdin; --json output is strict JSON (NaN and
infinities become null); no score is above 1.0."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.engine import load_encoder
from dupfinder.io import load_questions


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def strict_json(text: str):
    """JSON as the standard defines it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output: {text}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def model_copy(tmp_path, tiny_model):
    return shutil.copytree(tiny_model, tmp_path / "model")


def test_calibrate_write_changes_the_threshold_every_command_reports(tmp_path, model_copy, pairs_file):
    ix = tmp_path / "ix"
    assert run("index", pairs_file, "--index", ix, "--model", model_copy).exit_code == 0
    old = json.loads((model_copy / "manifest.json").read_text())["threshold"]
    r = run("calibrate", pairs_file, "--model", model_copy, "--write", "accuracy", "--json")
    assert r.exit_code == 0, r.output
    written = strict_json(r.stdout)["written"]
    new = written["threshold"]
    assert written["previous"] == old and new != old  # the tiny model's tau came from its validation split alone

    r = run("info", "--index", ix, "--json")
    assert r.exit_code == 0, r.output
    info = strict_json(r.stdout)
    assert (info["threshold"], info["threshold_source"], info["model"]) == (new, "model", str(model_copy.resolve()))
    assert f"tau {new:.4f}" in run("info", "--index", ix).stdout

    r = run("query", "How old are you?", "--index", ix, "-k", "47", "--json")  # every question indexed
    assert r.exit_code == 0, r.output
    answer = strict_json(r.stdout)
    assert answer["threshold"] == new
    assert [h["duplicate"] for h in answer["hits"]] == [h["score"] >= new for h in answer["hits"]]
    assert any(h["duplicate"] for h in answer["hits"]) and not all(h["duplicate"] for h in answer["hits"])
    assert f"at tau {new:.4f}" in run("query", "How old are you?", "--index", ix).stdout

    for args in (("similarity", "How old are you?", "What is your age?"), ("evaluate", pairs_file),
                 ("dedup", pairs_file, "-o", tmp_path / "out.csv")):
        r = run(*args, "--model", model_copy, "--json")
        assert r.exit_code == 0, r.output
        assert strict_json(r.stdout.splitlines()[-1])["threshold"] == new, args
    # an explicit --threshold is in force instead, and says so
    r = run("query", "How old are you?", "--index", ix, "--threshold", "0.5", "--json")
    assert strict_json(r.stdout)["threshold"] == 0.5


def test_query_reads_the_question_from_stdin(tmp_path, tiny_model, pairs_file):
    ix = tmp_path / "ix"
    assert run("index", pairs_file, "--index", ix, "--model", tiny_model).exit_code == 0
    given = run("query", "How old are you?", "--index", ix, "-k", "3", "--json")
    piped = run("query", "-", "--index", ix, "-k", "3", "--json", input="How old are you?\n")
    assert piped.exit_code == 0, piped.output
    assert strict_json(piped.stdout) == strict_json(given.stdout)
    assert run("query", "-", "--index", ix, "-k", "3", input="How old are you?\n").stdout == run("query", "How old are you?", "--index", ix, "-k", "3").stdout
    # several lines: one JSON line each, as --file answers
    r = run("query", "-", "--index", ix, "-k", "2", input="How old are you?\n\n  \nWhere are you from?\n")
    assert r.exit_code == 0, r.output
    lines = [strict_json(line) for line in r.stdout.splitlines()]
    assert [(x["id"], x["text"]) for x in lines] == [(None, "How old are you?"), (None, "Where are you from?")]
    assert lines[0]["hits"] == strict_json(given.stdout)["hits"][:2]
    for empty in ("", "\n  \n"):
        r = run("query", "-", "--index", ix, input=empty)
        assert r.exit_code == 2 and "Error: Invalid value for QUESTION: stdin held no question" in r.output
    # stdin is decoded as a file given as - is: invalid UTF-8 replaced, not a traceback
    r = run("query", "-", "--index", ix, "-k", "1", "--json", input=b"caf\xe9 near me?\n")
    assert r.exit_code == 0, r.output
    assert strict_json(r.stdout)["query"] == "caf\ufffd near me?"


def test_similarity_reads_a_question_from_stdin(tiny_model):
    given = strict_json(run("similarity", "How old are you?", "What is your age?", "--model", tiny_model, "--json").stdout)
    for args, piped in ((("-", "What is your age?"), "How old are you?\n"), (("How old are you?", "-"), "  What is your age?  \n")):
        r = run("similarity", *args, "--model", tiny_model, "--json", input=piped)
        assert r.exit_code == 0, r.output
        assert strict_json(r.stdout) == given
    r = run("similarity", "-", "Where is a caf\u00e9?", "--model", tiny_model, "--json", input=b"\xef\xbb\xbfcaf\xe9 near me?\n")
    assert r.exit_code == 0, r.output  # a BOM dropped, an invalid byte replaced
    assert strict_json(r.stdout) == strict_json(run("similarity", "caf\ufffd near me?", "Where is a caf\u00e9?", "--model", tiny_model, "--json").stdout)
    r = run("similarity", "-", "-", "--model", tiny_model, input="a\nb\n")
    assert r.exit_code == 2 and "Error: only one of the two questions can come from stdin" in r.output
    r = run("similarity", "-", "b?", "--model", tiny_model, input="  \n")
    assert r.exit_code == 2 and "Error: Invalid value for QUESTION1: stdin held no question" in r.output
    r = run("similarity", "a?", "--model", tiny_model)
    assert r.exit_code == 2 and "Error: give two questions (or --file PAIRS)" in r.output


def test_json_output_never_holds_nan(tmp_path, tiny_model, pairs_file):
    only_duplicates = tmp_path / "dups.csv"
    rows = list(csv.reader(io.StringIO(pairs_file.read_text())))
    with open(only_duplicates, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [row for row in rows[1:] if row[-1] == "1"])
    r = run("evaluate", only_duplicates, "--model", tiny_model, "--json", "--unseen-from", pairs_file)
    assert r.exit_code == 0, r.output
    result = strict_json(r.stdout)
    assert result["roc_auc"] is None and result["pairs"] == len(rows) - 1 - sum(row[-1] == "0" for row in rows[1:])
    assert "ROC-AUC nan" in run("evaluate", only_duplicates, "--model", tiny_model).stdout  # the table may say so

    empty = tmp_path / "empty.csv"
    empty.write_text("question\n\n \n")  # nothing to deduplicate: no cluster, no score
    r = run("dedup", empty, "-o", tmp_path / "out.csv", "--model", tiny_model, "--json")
    assert r.exit_code == 0, r.output
    summary = strict_json(r.stdout)
    assert (summary["rows"], summary["rows_deduplicated"], summary["clusters"], summary["largest_cluster"]) == (1, 0, 0, 0)
    ix = tmp_path / "ix"
    assert run("index", pairs_file, "--index", ix, "--model", tiny_model).exit_code == 0
    r = run("dedup", "-", "-o", "-", "--against", ix, "--json", "--threshold", "0.9999", input="Nothing like it at all\nHow old are you?\n")
    assert r.exit_code == 0, r.output
    assert strict_json(r.stderr.splitlines()[-1])["rows_matching_index"] == 1  # with stdout the table, the summary goes to stderr
    table = list(csv.reader(io.StringIO(r.stdout)))
    assert [row[-2:] for row in table[1:]] == [["", ""], ["1", "1.0000"]]  # no match: empty, never "nan"
    r = run("calibrate", pairs_file, "--model", tiny_model, "--json")
    assert r.exit_code == 0 and strict_json(r.stdout)["pairs"] == len(rows) - 1


def test_no_score_is_above_one(tmp_path, tiny_model, pairs_file):
    encoder = load_encoder(tiny_model)
    questions = load_questions(pairs_file).texts
    # questions whose own vector has an inner product above 1 in float32: the case to clip
    over = [q for q in questions if float(encoder.encode([q])[0] @ encoder.encode([q])[0]) > 1.0]
    assert over, "no question of the pairs file gives an inner product above 1: this test checks nothing"
    q = over[0]
    ix = tmp_path / "ix"
    assert run("index", pairs_file, "--index", ix, "--model", tiny_model).exit_code == 0
    hits = strict_json(run("query", q, "--index", ix, "-k", "3", "--json").stdout)["hits"]
    assert hits[0]["text"] == q and hits[0]["score"] == 1.0
    r = run("query", "--file", pairs_file, "--index", ix, "-k", "2")
    assert max(h["score"] for line in r.stdout.splitlines() for h in strict_json(line)["hits"]) <= 1.0
    assert strict_json(run("similarity", q, q, "--model", tiny_model, "--json").stdout)["score"] == 1.0
    r = run("dedup", "-", "-o", "-", "--model", tiny_model, input=f"{q}\n{q.upper()}\n")
    assert [row[-1] for row in csv.reader(io.StringIO(r.stdout))][1:] == ["1.0000", "1.0000"]
