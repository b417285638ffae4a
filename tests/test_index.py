"""The store: FAISS + SQLite + manifest round trips, appends, removal, bad artifacts, crash and concurrency safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dupfinder.errors import IndexStoreError, InputError
from dupfinder.store.local import (
    FORMAT_VERSION,
    MANIFEST,
    SCAN_FILE,
    HnswConfig,
    Question,
    QuestionIndex,
    add_questions,
    default_index_dir,
    ScanConfig,
    remove_questions,
)
from dupfinder.search import exact_search
from fake_encoder import FakeEncoder

QUESTIONS = [
    Question("a1", "How old are you?", "t.csv"),
    Question("a2", "What is your age?", "t.csv"),
    Question("a3", "Where do you live?", "t.csv"),
    Question(None, "How do I learn Python?", "t.csv"),
    Question("a5", "What is the capital of France?", "t.csv"),
]


def state(directory: Path) -> tuple[int, int, int]:
    """(manifest count, FAISS count, SQLite count) of the current generation."""
    with QuestionIndex.open(directory) as idx:
        n_rows = idx.db.execute("SELECT count(*) FROM questions").fetchone()[0]
        return idx.count, idx.faiss_index.ntotal, n_rows


def test_round_trip_keeps_rows_vectors_and_manifest(tmp_path):
    enc = FakeEncoder()
    report = add_questions(tmp_path / "ix", enc, QUESTIONS)
    assert (report.added, report.count, report.created) == (5, 5, True)
    with QuestionIndex.open(tmp_path / "ix", encoder=enc) as idx:
        m = idx.manifest
        assert (m["format_version"], m["kind"], m["metric"], m["dimension"], m["count"]) == (FORMAT_VERSION, "flat", "inner_product", 16, 5)
        assert m["model"]["fingerprint"] == "fake0000" and idx.model_path == Path("/nowhere/fake")
        ids, vectors = idx.vectors()
        assert ids.tolist() == [0, 1, 2, 3, 4]
        np.testing.assert_allclose(vectors, enc.encode([q.text for q in QUESTIONS]), atol=1e-6)
        rows = idx.rows([4, 3, -1, 99])
        assert set(rows) == {3, 4}
        assert rows[3]["user_id"] is None and rows[3]["text"] == "How do I learn Python?"
        assert rows[4]["user_id"] == "a5" and rows[4]["source"] == "t.csv" and rows[4]["added"]
        assert len(rows[4]["text_hash"]) == 16
        scores, found = idx.search(enc.encode(["what is YOUR age?"]), k=2)
        assert found[0, 0] == 1 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_search_matches_brute_force_and_pads_with_minus_one(tmp_path):
    enc = FakeEncoder(dim=24)
    qs = [Question(str(i), f"question number {i} about {i % 7}") for i in range(301)]
    add_questions(tmp_path / "ix", enc, qs)
    queries = enc.encode([f"query {j}" for j in range(13)])
    with QuestionIndex.open(tmp_path / "ix") as idx:
        scores, ids = idx.search(queries, k=7)
        want_scores, want_rows = exact_search(enc.encode([q.text for q in qs]), queries, k=7, block=5)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
        assert (ids == want_rows).all()  # ids were assigned 0.. in input order
        scores, ids = idx.search(queries[:1], k=400)
        assert (ids[0, 301:] == -1).all() and (ids[0, :301] >= 0).all()


def test_append_skips_same_id_same_text_and_empty(tmp_path):
    enc = FakeEncoder()
    add_questions(tmp_path / "ix", enc, QUESTIONS)
    more = [
        Question("a1", "A different text, same id"),
        Question("zz", "  how OLD   are you?  "),  # same normalized text as a1
        Question(None, ""),
        Question("b1", "A new question?"),
        Question("b2", "a new question?"),  # a duplicate within the same input
    ]
    report = add_questions(tmp_path / "ix", enc, more)
    assert (report.added, report.already_indexed, report.empty, report.count, report.created) == (1, 3, 1, 6, False)
    assert state(tmp_path / "ix") == (6, 6, 6)
    with QuestionIndex.open(tmp_path / "ix") as idx:
        assert idx.rows([5])[5]["user_id"] == "b1"
    report = add_questions(tmp_path / "ix", enc, more)  # nothing new: no new generation
    assert (report.added, report.already_indexed) == (0, 4)


def test_old_generations_are_collected(tmp_path):
    enc = FakeEncoder()
    for i in range(4):
        add_questions(tmp_path / "ix", enc, [Question(str(i), f"question {i}")])
    gens = sorted(p.name for p in (tmp_path / "ix").iterdir() if p.name.startswith("gen-"))
    assert gens == ["gen-3", "gen-4"]  # the current one, and the previous for readers that are opening it


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_remove_deletes_from_faiss_and_sqlite(tmp_path, kind):
    enc = FakeEncoder()
    add_questions(tmp_path / "ix", enc, QUESTIONS, kind=kind, hnsw=HnswConfig(m=8, ef_construction=20, ef_search=16))
    report = remove_questions(tmp_path / "ix", ["a2", "3"])  # a user id, and the internal id of a row without one
    assert report.count == 3
    assert state(tmp_path / "ix") == (3, 3, 3)
    with QuestionIndex.open(tmp_path / "ix") as idx:
        assert idx.kind == kind
        _, ids = idx.search(enc.encode(["What is your age?", "How do I learn Python?"]), k=5)
        assert not {1, 3} & set(ids.ravel().tolist())
        assert set(idx.rows(range(5))) == {0, 2, 4}
    add_questions(tmp_path / "ix", enc, [Question("new", "Brand new question")])
    with QuestionIndex.open(tmp_path / "ix") as idx:
        assert idx.rows([5])[5]["user_id"] == "new"  # ids are never reused


def test_remove_unknown_id_changes_nothing(tmp_path):
    add_questions(tmp_path / "ix", FakeEncoder(), QUESTIONS)
    before = (tmp_path / "ix" / MANIFEST).read_bytes()
    with pytest.raises(InputError, match="not in .*: nope; nothing was removed"):
        remove_questions(tmp_path / "ix", ["a1", "nope"])
    assert (tmp_path / "ix" / MANIFEST).read_bytes() == before


def test_hnsw_recall_against_exact(tmp_path):
    enc = FakeEncoder(dim=32)
    qs = [Question(str(i), f"q {i}") for i in range(3000)]
    add_questions(tmp_path / "ix", enc, qs, kind="hnsw", hnsw=HnswConfig(m=16, ef_construction=40, ef_search=64))
    queries = enc.encode([f"other {j}" for j in range(100)])
    _, want = exact_search(enc.encode([q.text for q in qs]), queries, k=10)
    with QuestionIndex.open(tmp_path / "ix") as idx:
        _, got = idx.search(queries, k=10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got.tolist(), want.tolist())])
    assert recall >= 0.9


def test_missing_foreign_corrupt_and_newer_indexes_are_refused(tmp_path):
    with pytest.raises(IndexStoreError, match="no index at .*; build one with: dupfinder index FILE --index"):
        QuestionIndex.open(tmp_path / "none")
    enc = FakeEncoder()
    ix = tmp_path / "ix"
    add_questions(ix, enc, QUESTIONS)
    with pytest.raises(IndexStoreError, match="was built with model fake0000 .*, not other"):
        QuestionIndex.open(ix, encoder=FakeEncoder(fingerprint="other"))
    with pytest.raises(IndexStoreError, match="was built with model fake0000"):
        add_questions(ix, FakeEncoder(fingerprint="other"), [Question("x", "x?")])

    manifest = json.loads((ix / MANIFEST).read_text())
    (ix / MANIFEST).write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(IndexStoreError, match="index format 2; this dupfinder reads 1: upgrade dupfinder"):
        QuestionIndex.open(ix)
    (ix / MANIFEST).write_text("{not json")
    with pytest.raises(IndexStoreError, match="manifest.json is corrupt"):
        QuestionIndex.open(ix)
    (ix / MANIFEST).write_text(json.dumps(manifest))

    faiss_file = ix / f"gen-{manifest['generation']}" / "vectors.faiss"
    good = faiss_file.read_bytes()
    faiss_file.write_bytes(good[: len(good) // 2])
    with pytest.raises(IndexStoreError, match="vectors.faiss is corrupt"):
        QuestionIndex.open(ix)
    faiss_file.write_bytes(good)
    meta = ix / f"gen-{manifest['generation']}" / "meta.db"
    meta.write_bytes(b"garbage" * 100)
    with pytest.raises(IndexStoreError, match="meta.db is corrupt"):
        QuestionIndex.open(ix)


def test_default_index_dir_follows_env(monkeypatch, tmp_path):
    assert default_index_dir() == tmp_path / "home" / "indexes" / "default"  # conftest sets DUPFINDER_HOME
    monkeypatch.setenv("DUPFINDER_INDEX", str(tmp_path / "mine"))
    assert default_index_dir() == tmp_path / "mine"
    monkeypatch.delenv("DUPFINDER_INDEX")
    monkeypatch.delenv("DUPFINDER_HOME")
    assert default_index_dir() == Path("indexes") / "default"


READER = """
import sys, time, numpy as np
from pathlib import Path
from dupfinder.store.local import QuestionIndex
directory, stop = Path(sys.argv[1]), Path(sys.argv[2])
rng = np.random.default_rng(0)
opened = 0
while not stop.exists():
    with QuestionIndex.open(directory) as idx:  # checks manifest, FAISS and SQLite counts agree
        q = rng.standard_normal((1, idx.dim)).astype(np.float32)
        scores, ids = idx.search(q, 3)
        rows = idx.rows(ids[0].tolist())
        assert all(i in rows for i in ids[0].tolist() if i >= 0), "a FAISS id without its SQLite row"
        opened += 1
print(opened)
"""


def test_two_readers_while_a_writer_appends(tmp_path):
    enc = FakeEncoder()
    ix, stop = tmp_path / "ix", tmp_path / "stop"
    add_questions(ix, enc, QUESTIONS)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(ix), str(stop)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        time.sleep(1.0)  # let them start reading
        for round in range(15):
            add_questions(ix, enc, [Question(f"r{round}-{i}", f"round {round} question {i}") for i in range(50)])
            time.sleep(0.05)
    finally:
        stop.touch()
        outs = [r.communicate(timeout=60) for r in readers]
    for r, (out, err) in zip(readers, outs):
        assert r.returncode == 0, err
        assert int(out) > 0
    assert state(ix) == (5 + 15 * 50,) * 3


def write_questions(path: Path, n: int, seed: int) -> None:
    words = "how what why when is are do does the a best way to learn make get python india money life".split()
    rng = np.random.default_rng(seed)
    path.write_text("\n".join(" ".join(rng.choice(words, size=8)) + f" {i}?" for i in range(n)) + "\n")


def run_index(args: list[str]) -> subprocess.Popen:
    # a shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt:
    # give the child the default disposition so Ctrl-C is tested however the suite was started
    return subprocess.Popen([sys.executable, "-m", "dupfinder", "index", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_killed_index_leaves_the_previous_index(tmp_path, tiny_model):
    ix = tmp_path / "ix"
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    write_questions(first, 50, seed=1)
    write_questions(second, 12000, seed=2)
    p = run_index([str(first), "--index", str(ix), "--model", str(tiny_model), "--threads", "1"])
    assert p.wait(timeout=120) == 0, p.stderr.read()
    before = (ix / MANIFEST).read_bytes()
    assert state(ix) == (50, 50, 50)

    # SIGKILL while the next generation is being written: the worst moment
    p = run_index([str(second), "--index", str(ix), "--model", str(tiny_model), "--threads", "1"])
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline and not any(n.startswith(".tmp-") for n in os.listdir(ix)):
        time.sleep(0.002)
    assert p.poll() is None, f"index finished before it could be killed: {p.stderr.read()}"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert (ix / MANIFEST).read_bytes() == before
    assert state(ix) == (50, 50, 50)

    # Ctrl-C while encoding
    p = run_index([str(second), "--index", str(ix), "--model", str(tiny_model), "--threads", "1"])
    while p.poll() is None and not (ix / ".lock").exists():
        time.sleep(0.01)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) != 0
    assert state(ix) == (50, 50, 50)

    # the next run cleans up after the killed ones and appends
    p = run_index([str(second), "--index", str(ix), "--model", str(tiny_model), "--threads", "1"])
    assert p.wait(timeout=120) == 0, p.stderr.read()
    assert state(ix) == (12050, 12050, 12050)
    assert not [n for n in os.listdir(ix) if n.startswith(".tmp-")]


def test_sqlite_rows_match_faiss_ids(tmp_path):
    add_questions(tmp_path / "ix", FakeEncoder(), QUESTIONS)
    remove_questions(tmp_path / "ix", ["a1"])
    with QuestionIndex.open(tmp_path / "ix") as idx:
        faiss_ids, _ = idx.vectors()
        gen = tmp_path / "ix" / f"gen-{idx.manifest['generation']}" / "meta.db"
    sql_ids = [r[0] for r in sqlite3.connect(gen).execute("SELECT id FROM questions ORDER BY id")]
    assert sorted(faiss_ids.tolist()) == sql_ids == [1, 2, 3, 4]


def test_concurrent_writers_wait_for_each_other(tmp_path):
    import threading

    enc = FakeEncoder()
    ix = tmp_path / "ix"
    add_questions(ix, enc, QUESTIONS)
    errors = []

    def append(w: int) -> None:
        try:
            for r in range(5):
                add_questions(ix, enc, [Question(f"w{w}-{r}-{i}", f"writer {w} round {r} question {i}") for i in range(20)])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert state(ix) == (5 + 2 * 5 * 20,) * 3


def test_mapped_and_read_indexes_search_alike(tmp_path):
    enc = FakeEncoder()
    add_questions(tmp_path / "ix", enc, [Question(str(i), f"question {i}") for i in range(200)])
    queries = enc.encode(["question 7", "question 150", "unrelated"])
    with QuestionIndex.open(tmp_path / "ix") as mapped, QuestionIndex.open(tmp_path / "ix", mmap=False) as read:
        a, b = mapped.search(queries, 5), read.search(queries, 5)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])
        add_questions(tmp_path / "ix", enc, [Question("new", "a new one")])  # a writer while a mapped reader is open
        assert mapped.search(queries, 5)[1].tolist() == a[1].tolist()
    assert state(tmp_path / "ix") == (201, 201, 201)


def scan_corpus(n: int) -> list[Question]:
    return [Question(f"s{i}", f"scan question {i}") for i in range(n)]


def test_flat_scan_returns_exact_scores_and_matches_exact_search(tmp_path):
    enc = FakeEncoder(dim=16)
    qs = scan_corpus(600)
    add_questions(tmp_path / "ix", enc, qs, scan=ScanConfig(min_count=500, candidates=40))
    assert (tmp_path / "ix" / "gen-1" / SCAN_FILE).is_file()
    rng = np.random.default_rng(3)
    queries = enc.encode([q.text for q in qs[:9]]) + 0.4 * rng.standard_normal((9, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    db = enc.encode([q.text for q in qs])
    want_scores, want_rows = exact_search(db, queries, 10)
    with QuestionIndex.open(tmp_path / "ix") as idx:
        assert idx.scan_index is not None and idx.scan_index.ntotal == 600
        scores, ids = idx.search(queries, 10)
        exact_scores, exact_ids = idx.search(queries, 10, exact=True)
        # every returned score is the exact float32 cosine of the returned question
        np.testing.assert_allclose(scores, np.take_along_axis(queries @ db.T, ids, axis=1), atol=1e-6)
        np.testing.assert_allclose(exact_scores, want_scores, atol=1e-6)
        assert (exact_ids == want_rows).all()
        # with every vector a candidate, the scan path is exact search
        idx.manifest["scan"]["candidates"] = 600
        scores, ids = idx.search(queries, 10)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)
        assert (ids == want_rows).all()
        scores, ids = idx.search(queries[:2], 700)  # k beyond the count pads with -1
        assert (ids[:, 600:] == -1).all() and np.isneginf(scores[:, 600:]).all() and (ids[:, :600] >= 0).all()


def test_flat_scan_follows_removal_and_size(tmp_path):
    enc = FakeEncoder(dim=16)
    add_questions(tmp_path / "ix", enc, scan_corpus(60), scan=ScanConfig(min_count=50, candidates=60))
    remove_questions(tmp_path / "ix", ["s3", "s7"])
    with QuestionIndex.open(tmp_path / "ix") as idx:
        assert idx.scan_index.ntotal == 58
        (hits,), (ids,) = idx.search(enc.encode(["scan question 8"]), 3)
        assert ids[0] == 8 and hits[0] == pytest.approx(1.0, abs=1e-6)
    remove_questions(tmp_path / "ix", [f"s{i}" for i in range(20, 40)])  # 38 left: below min_count
    with QuestionIndex.open(tmp_path / "ix") as idx:
        assert idx.scan_index is None
        assert not (tmp_path / "ix" / f"gen-{idx.manifest['generation']}" / SCAN_FILE).exists()


def test_index_written_before_the_scan_is_searched_exactly_then_gains_it(tmp_path):
    enc = FakeEncoder(dim=16)
    add_questions(tmp_path / "ix", enc, scan_corpus(40), scan=ScanConfig(min_count=10))
    manifest = json.loads((tmp_path / "ix" / MANIFEST).read_text())
    del manifest["scan"]  # as an older dupfinder wrote it
    (tmp_path / "ix" / MANIFEST).write_text(json.dumps(manifest))
    with QuestionIndex.open(tmp_path / "ix") as idx:
        assert idx.scan_index is None
        assert idx.search(enc.encode(["scan question 5"]), 1)[1][0, 0] == 5
    add_questions(tmp_path / "ix", enc, [Question("new", "one more")])
    manifest = json.loads((tmp_path / "ix" / MANIFEST).read_text())
    assert manifest["scan"] == {**vars(ScanConfig())}


def test_damaged_scan_file_falls_back_to_exact_search(tmp_path):
    enc = FakeEncoder(dim=16)
    add_questions(tmp_path / "ix", enc, scan_corpus(40), scan=ScanConfig(min_count=10))
    (tmp_path / "ix" / "gen-1" / SCAN_FILE).write_bytes(b"not a faiss file")
    with QuestionIndex.open(tmp_path / "ix") as idx:
        assert idx.scan_index is None
        assert idx.search(enc.encode(["scan question 5"]), 1)[1][0, 0] == 5
