"""`dupfinder index / query / remove / info` through click: output, formats, and every user error
with its exit code and message (the index on disk unchanged)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dupfinder import engine as engine_module
from dupfinder.cli import cli
from dupfinder.errors import InputError
from dupfinder.io import load_questions
from dupfinder.store.local import MANIFEST, LocalStore


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


@pytest.fixture
def built(tmp_path, tiny_model, pairs_file):
    """An index of the tiny pairs file, built with the tiny model."""
    ix = tmp_path / "ix"
    r = run("index", pairs_file, "--index", ix, "--model", tiny_model)
    assert r.exit_code == 0, r.output
    return ix


def test_index_pairs_file_then_append_skips_known(built, pairs_file, tmp_path):
    n = len(load_questions(pairs_file))
    with LocalStore(built) as store:
        assert store.count == n
    r = run("query", "How old are you?", "--index", built, "-k", "1", "--json")
    assert json.loads(r.stdout)["hits"][0] == {"id": "1", "text": "How old are you?", "score": pytest.approx(1.0, abs=1e-4), "duplicate": True}
    extra = tmp_path / "extra.csv"
    extra.write_text("qid,text\n1,How old are you?\n900,How old are you?!\n901,  \n902,what is your AGE?\n")
    r = run("index", extra, pairs_file, "--index", built)
    assert r.exit_code == 0, r.output
    assert f"updated {built}: 1 added, {n + 2} already indexed, 1 empty skipped; {n + 1} questions in all" in r.output
    assert "extra.csv: 4 rows, 3 kept, 1 skipped (empty question)" in r.output


def test_index_text_lines_gz_and_stdin(tmp_path, tiny_model):
    ix = tmp_path / "ix"
    gz = tmp_path / "q.txt.gz"
    gz.write_bytes(gzip.compress("How old are you?\n\nWhere is Paris?\n".encode()))
    r = run("index", gz, "--index", ix, "--model", tiny_model)
    assert r.exit_code == 0, r.output
    assert "2 added, 0 already indexed, 1 empty skipped; 2 questions in all" in r.output
    r = run("index", "-", "--index", ix, input="Who wrote Hamlet?\nWhere is Paris?\n")
    assert "1 added, 1 already indexed" in r.output
    tsv = tmp_path / "q.tsv"
    tsv.write_text("key\tbody_text\nk1\tWhat is love?\n")
    r = run("index", tsv, "--index", ix, "--text-column", "body_text", "--id-column", "key")
    assert r.exit_code == 0, r.output
    with LocalStore(ix) as store:
        assert store.sources() == {str(gz): 2, "<stdin>": 1, str(tsv): 1}
    r = run("query", "What is love?", "--index", ix, "-k", "4", "--json")
    shown = {h["text"]: h["id"] for h in json.loads(r.stdout)["hits"]}
    assert shown["What is love?"] == "k1"  # the file's id
    # no id in the file: the store's own, in the order they were added
    assert shown["How old are you?"] < shown["Where is Paris?"] < shown["Who wrote Hamlet?"]


def test_undecodable_bytes_are_repaired_and_counted(tmp_path, tiny_model):
    f = tmp_path / "q.txt"
    f.write_bytes(b"How old are you?\nWhat is caf\xe9 au lait?\n" + b"Where is Rome?\n" * 5)
    r = run("index", f, "--index", tmp_path / "ix", "--model", tiny_model)
    assert r.exit_code == 0, r.output
    assert "1 invalid UTF-8 byte replaced" in r.output and "3 added, 4 already indexed" in r.output


def test_query_text_json_and_threshold(built):
    r = run("query", "How old are you?", "--index", built, "-k", "3")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and "[1] How old are you?" in lines[0] and "DUPLICATE" in lines[0]
    assert lines[0].split()[0] == "1.0000"
    r = run("query", "How old are you?", "--index", built, "-k", "2", "--json")
    out = json.loads(r.stdout)
    assert out["query"] == "How old are you?" and len(out["hits"]) == 2
    assert out["hits"][0] == {"id": "1", "text": "How old are you?", "score": pytest.approx(1.0, abs=1e-4), "duplicate": True}
    r = run("query", "zebra quantum xylophone", "--index", built, "--threshold", "1.0")
    assert r.exit_code == 0
    assert "No duplicate: the best match scores" in r.output and "below tau 1.0000" in r.output
    r = run("query", "zebra", "--index", built, "--threshold", "0", "-k", "2")
    assert "2 duplicates at tau 0.0000" in r.output


def test_query_file_writes_json_lines(built, tmp_path):
    f = tmp_path / "queries.csv"
    f.write_text("id,question\nq1,How old are you?\nq2,\nq3,Where are you from?\n")
    r = run("query", "--file", f, "--index", built, "-k", "2")
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["id"], x["text"]) for x in lines] == [("q1", "How old are you?"), ("q3", "Where are you from?")]
    assert all(len(x["hits"]) == 2 and set(x["hits"][0]) == {"id", "text", "score", "duplicate"} for x in lines)
    assert lines[1]["hits"][0]["text"] == "Where are you from?" and lines[1]["hits"][0]["score"] >= lines[1]["hits"][1]["score"]
    assert "1 skipped (empty question)" in r.output


def test_remove_and_info(built):
    r = run("info", "--index", built, "--json")
    info = json.loads(r.stdout)
    n = info["count"]
    assert info["kind"] == "flat" and info["dimension"] == 16 and info["size_bytes"] > 0 and info["metric"] == "inner_product"
    r = run("remove", "1", "2", "--index", built)
    assert r.exit_code == 0, r.output
    assert f"removed 2 from {built}; {n - 2} questions left" in r.output
    r = run("query", "How old are you?", "--index", built, "--json", "-k", "50")
    assert not {"1", "2"} & {h["id"] for h in json.loads(r.stdout)["hits"]}
    r = run("info", "--index", built)
    assert r.exit_code == 0 and f"questions  {n - 2}" in r.output and "kind       flat (inner_product)" in r.output


def test_hnsw_kind_is_recorded_and_kept(tmp_path, tiny_model, pairs_file):
    ix = tmp_path / "ix"
    assert run("index", pairs_file, "--index", ix, "--model", tiny_model, "--kind", "hnsw").exit_code == 0
    r = run("index", "-", "--index", ix, "--kind", "flat", input="New question?\n")
    assert r.exit_code == 1
    assert r.output == f"Error: {ix} is a hnsw index; leave out --kind to append, or use another --index\n"
    r = run("query", "How old are you?", "--index", ix, "--json")
    assert json.loads(r.stdout)["hits"][0]["id"] == "1"
    # efSearch: recorded at build, overridable per query process, never rewritten on disk
    with LocalStore(ix) as store:
        assert store.ef_search == store.manifest["hnsw"]["ef_search"] == 96
        store.ef_search = 7
        assert store.ef_search == 7
    with LocalStore(ix) as store:
        assert store.ef_search == 96
    r = run("query", "How old are you?", "--index", ix, "--json", "--ef-search", "400")
    assert r.exit_code == 0 and json.loads(r.stdout)["hits"][0]["id"] == "1"


def test_ef_search_is_refused_for_a_flat_index(built):
    r = run("query", "How old are you?", "--index", built, "--ef-search", "64")
    assert r.exit_code == 2 and r.output.splitlines()[-1] == f"Error: --ef-search applies to HNSW indexes; {built} is flat"
    with LocalStore(built) as store, pytest.raises(InputError, match="HNSW"):
        store.ef_search = 64


def test_first_query_builds_the_demo_index(tmp_path, tiny_model, monkeypatch):
    demo = tmp_path / "demo.csv.gz"
    demo.write_bytes(gzip.compress(b"id,question\n7,How old are you?\n8,What is your age?\n9,Where is Paris?\n"))
    monkeypatch.setattr(engine_module, "DEMO_CORPUS", demo)
    r = run("query", "How old are you?", "--model", tiny_model, "-k", "2")
    assert r.exit_code == 0, r.output
    assert "building it from the demo corpus" in r.output and "[7] How old are you?" in r.output
    assert (tmp_path / "home" / "indexes" / "default" / MANIFEST).exists()  # DUPFINDER_HOME from conftest
    r = run("info")
    assert "questions  3" in r.output


def test_an_upgrade_rebuilds_the_demo_index_and_explains_the_others(tmp_path, monkeypatch):
    """An index built by an earlier shipped model: the demo-only default index is rebuilt with the
    shipped model of this install; any other one gets a one-line error saying how to rebuild it."""
    demo = tmp_path / "demo.csv.gz"
    demo.write_bytes(gzip.compress(b"id,question\n7,How old are you?\n8,What is your age?\n9,Where is Paris?\n"))
    monkeypatch.setattr(engine_module, "DEMO_CORPUS", demo)
    assert run("query", "How old are you?", "-k", "2").exit_code == 0  # built with the shipped model
    ix = tmp_path / "home" / "indexes" / "default"
    manifest = json.loads((ix / MANIFEST).read_text())
    shipped = manifest["model"]["fingerprint"]
    manifest["model"]["fingerprint"] = "0123456789abcdef"  # as if an earlier release had built it
    (ix / MANIFEST).write_text(json.dumps(manifest))
    r = run("query", "How old are you?", "-k", "2")
    assert r.exit_code == 0, r.output
    assert "holds the demo corpus indexed by an earlier shipped model: rebuilding it" in r.output
    assert "[7] How old are you?" in r.output
    with LocalStore(ix) as store:
        assert store.model["fingerprint"] == shipped and store.sources() == {str(demo): 3}
    assert not list(tmp_path.glob("home/indexes/default.*"))  # nothing left beside it

    # the same index with a user's questions added is not derived data: refused, explained, untouched
    assert run("index", "-", input="Who wrote Hamlet?\n").exit_code == 0
    manifest = json.loads((ix / MANIFEST).read_text())
    manifest["model"]["fingerprint"] = "0123456789abcdef"
    (ix / MANIFEST).write_text(json.dumps(manifest))
    same = unchanged(ix)
    r = run("query", "How old are you?")
    assert r.exit_code == 1 and len(r.output.splitlines()) == 1, r.output
    assert r.output.startswith(f"Error: {ix} was built with an earlier shipped model (0123456789abcdef); this dupfinder ships {shipped}")
    assert same()
    r = run("info")
    assert r.exit_code == 0 and f"sources    {demo} (3)" in r.output and "<stdin> (1)" in r.output


def test_shipped_demo_corpus():
    path = engine_module.DEMO_CORPUS
    assert path.stat().st_size < 3_000_000
    qs = load_questions(path)
    assert qs.kind == "table" and len(qs) >= 50_000 and qs.ok.all()
    assert len(set(qs.ids)) == len(qs) and None not in qs.ids


def unchanged(directory: Path):
    before = (directory / MANIFEST).read_bytes()
    return lambda: (directory / MANIFEST).read_bytes() == before


def test_bad_input_errors(built, tmp_path):
    same = unchanged(built)
    cases = [
        (("index", tmp_path / "q.xml", "--index", built), 1,
         f"Error: unknown file type: {tmp_path / 'q.xml'}; use a .csv, .tsv, .jsonl or .txt file (optionally .gz), or - for stdin\n"),
        (("index", tmp_path / "q.json", "--index", built), 1,
         f"Error: {tmp_path / 'q.json'} has no columns: no line is a JSON object with keys (JSON lines: one object per line)\n"),
        (("index", tmp_path / "nope.csv", "--index", built), 1, f"Error: file not found: {tmp_path / 'nope.csv'}\n"),
        (("index", tmp_path / "cols.csv", "--index", built), 1,
         f"Error: no question column in {tmp_path / 'cols.csv'}; columns are: a, b. Use --text-column NAME\n"),
        (("index", tmp_path / "cols.csv", "--index", built, "--text-column", "c"), 1,
         "Error: column 'c' not found; columns are: a, b. Use --text-column NAME\n"),
        (("index", tmp_path / "empty.txt", "--index", built), 1, f"Error: {tmp_path / 'empty.txt'} is empty\n"),
        (("index", tmp_path / "binary.txt", "--index", built), 1,
         f"Error: {tmp_path / 'binary.txt'} does not look like UTF-8 text (3,000 undecodable bytes); convert it to UTF-8 first\n"),
        (("remove", "no-such-id", "--index", built), 1, f"Error: not in {built}: no-such-id; nothing was removed\n"),
    ]
    (tmp_path / "q.json").write_text("{}")
    (tmp_path / "q.xml").write_text("<q/>")
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x80" * 1000)
    for args, code, message in cases:
        r = run(*args)
        assert (r.exit_code, r.output) == (code, message), args
        assert same()
    r = run("query", "How old are you?", "--index", built, "-k", "0")
    assert r.exit_code == 2 and "Error: Invalid value for '-k': 0 is not in the range x>=1." in r.output
    r = run("query", "How old are you?", "--index", built, "--threshold", "-0.5")
    assert r.exit_code == 2 and "Error: Invalid value for '--threshold': -0.5 is not in the range 0.0<=x<=1.0." in r.output
    r = run("query", "   ", "--index", built)
    assert r.exit_code == 2 and "Error: Invalid value for QUESTION: the question must not be empty" in r.output
    r = run("query", "--index", built)
    assert r.exit_code == 2 and "Error: give either a QUESTION or --file FILE" in r.output
    assert same()


def test_a_new_index_of_only_empty_questions_is_refused_and_not_created(tmp_path, tiny_model):
    empty = tmp_path / "e.csv"
    empty.write_text("id,question\n1,\n2,  \n")
    r = run("index", empty, "--index", tmp_path / "ix", "--model", tiny_model)
    assert r.exit_code == 1
    assert r.output == f"{empty}: 2 rows, 0 kept, 2 skipped (empty question)\nError: no questions to index: every one was empty\n"
    assert not (tmp_path / "ix").exists()


def test_missing_foreign_and_corrupt_index_errors(built, tmp_path):
    r = run("query", "How old are you?", "--index", tmp_path / "none")
    assert (r.exit_code, r.output) == (1, f"Error: no index at {tmp_path / 'none'}; build one with: dupfinder index FILE --index {tmp_path / 'none'}\n")
    r = run("info", "--index", tmp_path / "none")
    assert r.exit_code == 1 and r.output.startswith("Error: no index at")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("x")
    r = run("info", "--index", tmp_path / "junk")
    assert (r.exit_code, r.output) == (1, f"Error: {tmp_path / 'junk'} is not a dupfinder index (manifest.json is missing)\n")
    (tmp_path / "file").write_text("keep me")
    for args in (("index", "-"), ("query", "How old are you?"), ("info",), ("remove", "3")):
        for where in (tmp_path / "file", tmp_path / "file" / "sub"):
            r = run(*args, "--index", where, input="A question?\n")
            assert (r.exit_code, r.output) == (1, f"Error: {tmp_path / 'file'} is a file, not an index folder; choose another --index\n")
    assert (tmp_path / "file").read_text() == "keep me"

    manifest = json.loads((built / MANIFEST).read_text())
    foreign = {**manifest, "model": {**manifest["model"], "fingerprint": "0123456789abcdef"}}
    (built / MANIFEST).write_text(json.dumps(foreign))
    r = run("query", "How old are you?", "--index", built)
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: {built} was built with model 0123456789abcdef") and r.output.count("\n") == 1
    r = run("index", "-", "--index", built, input="A new question?\n")
    assert r.exit_code == 1 and "was built with model 0123456789abcdef" in r.output
    (built / MANIFEST).write_text(json.dumps(manifest))

    database = built / "questions.db"
    for extra in (Path(f"{database}-wal"), Path(f"{database}-shm")):
        extra.unlink(missing_ok=True)
    database.write_bytes(database.read_bytes()[:100])
    for args in (("query", "How old are you?"), ("info",), ("index", "-")):
        r = run(*args, "--index", built, input="A new question?\n")
        assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
        assert r.output.startswith(f"Error: {database} is corrupt or unreadable (") and r.output.endswith("; rebuild the index\n")


def test_query_with_a_missing_model_says_how_to_fix(built, tmp_path):
    manifest = json.loads((built / MANIFEST).read_text())
    (built / MANIFEST).write_text(json.dumps({**manifest, "model": {**manifest["model"], "path": str(tmp_path / "gone")}}))
    r = run("query", "How old are you?", "--index", built)
    assert r.exit_code == 1
    assert r.output == (f"Error: cannot load the model that built {built} (model directory not found: {tmp_path / 'gone'}); "
                        "pass --model with that model, or rebuild the index\n")
