"""The local store (one folder: SQLite in WAL mode with every question and its vector, FAISS in
memory, snapshots as derived data): what it keeps on disk, writes seen by another process's next
read, compaction, HNSW settings, the flat scan path, format-1 folders migrated, bad artifacts, and a
killed writer or compaction that loses nothing committed. What every store must do is in test_store.py."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.engine import default_location
from dupfinder.errors import IndexStoreError, InputError
from dupfinder.knn import exact_search
from dupfinder.store import local
from dupfinder.store.base import Question
from dupfinder.store.local import MANIFEST, HnswConfig, LocalStore, ScanConfig, read_manifest
from dupfinder.store.vectors import SCAN_FILE
from fake_encoder import FakeEncoder, add_questions, open_local

QUESTIONS = [
    Question("a1", "How old are you?", "t.csv"),
    Question("a2", "What is your age?", "t.csv"),
    Question("a3", "Where do you live?", "t.csv"),
    Question(None, "How do I learn Python?", "t.csv"),
    Question("a5", "What is the capital of France?", "t.csv"),
]


def rows_in_sqlite(directory: Path) -> int:
    with sqlite3.connect(directory / local.DATABASE) as db:
        return db.execute("SELECT count(*) FROM questions").fetchone()[0]


def state(directory: Path) -> tuple[int, int]:
    """(questions a fresh open of the store counts, rows in its SQLite file)."""
    with LocalStore(directory) as store:
        return store.count, rows_in_sqlite(directory)


def snapshots(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("snap-*"))


def remove(directory: Path, ids: list[str]):
    with LocalStore(directory) as store:
        return store.remove(ids)


def set_manifest(directory: Path, **entries) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    (directory / MANIFEST).write_text(json.dumps({**manifest, **entries}))


def test_round_trip_keeps_rows_vectors_and_manifest(tmp_path):
    enc = FakeEncoder()
    report = add_questions(tmp_path / "ix", enc, QUESTIONS)
    assert (report.added, report.count, report.created) == (5, 5, True)
    m = read_manifest(tmp_path / "ix")
    assert (m["format_version"], m["kind"], m["metric"], m["dimension"]) == (local.FORMAT_VERSION, "flat", "inner_product", 16)
    assert m["model"]["fingerprint"] == "fake0000" and m["model"]["path"] == str(Path("/nowhere/fake"))
    assert m["scan"] == {**vars(ScanConfig())}
    with LocalStore(tmp_path / "ix") as store:
        ids, vectors = store.all_vectors()
        assert len(set(ids.tolist())) == 5
        order = [store.get([i])[i].text for i in ids.tolist()]
        np.testing.assert_array_equal(vectors, enc.encode(order))  # float32 as encoded, bit for bit
        info = store.info()
        assert info["format_version"] == local.FORMAT_VERSION and info["size_bytes"] > 0 and info["updated"] >= info["created"]


def test_a_write_is_seen_by_a_store_already_open(tmp_path):
    enc = FakeEncoder()
    add_questions(tmp_path / "ix", enc, QUESTIONS)
    with LocalStore(tmp_path / "ix") as reader:  # another process would see the same: it reads SQLite
        assert reader.count == 5
        add_questions(tmp_path / "ix", enc, [Question("n1", "A new question?")])
        remove(tmp_path / "ix", ["a2"])
        assert reader.count == 5
        (scores,), (ids,) = reader.search(enc.encode(["A new question?"]), 1)
        assert scores[0] == pytest.approx(1.0, abs=1e-6) and reader.get([ids[0]])[ids[0]].user_id == "n1"
        _, found = reader.search(enc.encode(["What is your age?"]), 5)
        assert "a2" not in {r.user_id for r in reader.get(found.ravel().tolist()).values()}


def test_ids_are_never_reused_across_processes_and_compactions(tmp_path):
    enc = FakeEncoder()
    add_questions(tmp_path / "ix", enc, QUESTIONS)
    with LocalStore(tmp_path / "ix") as store:
        gone = {i for i, r in store.get(range(-1, 100)).items() if r.user_id in ("a2", "a5")}
        store.remove(["a2", "a5"])
        assert store.compact()  # purges the deleted vectors, and the deletion log
    add_questions(tmp_path / "ix", enc, [Question("n1", "Brand new question"), Question("n2", "Another")])
    with LocalStore(tmp_path / "ix") as store:
        new = {i for i, r in store.get(range(-1, 100)).items() if r.user_id in ("n1", "n2")}
        assert len(gone) == len(new) == 2 and not gone & new
        assert store.count == 5 and rows_in_sqlite(tmp_path / "ix") == 5


def test_compaction_writes_a_snapshot_that_the_next_open_starts_from(tmp_path, monkeypatch):
    enc = FakeEncoder()
    ix = tmp_path / "ix"
    monkeypatch.setattr(local, "COMPACT_MIN", 3)  # a compaction after every 3 changes
    for i in range(4):
        add_questions(ix, enc, [Question(f"{i}-{j}", f"question {i} {j}") for j in range(3)])
        assert len(snapshots(ix)) == min(i + 1, 2)  # the current one, and the previous for a process that is loading it
    remove(ix, ["0-0", "3-2"])
    add_questions(ix, enc, [Question("late", "after the last snapshot")])  # replayed from SQLite at the next open
    assert state(ix) == (11, 11)
    queries = enc.encode(["question 0 0", "question 2 1", "after the last snapshot"])
    reference = sorted(q.text for q in [*(Question(None, f"question {i} {j}") for i in range(4) for j in range(3))]
                       if q.text not in ("question 0 0", "question 3 2")) + ["after the last snapshot"]
    with LocalStore(ix) as store:
        scores, ids = store.search(queries, 11)
        texts = [[store.get([i])[i].text for i in row] for row in ids.tolist()]
    want_scores, want_rows = exact_search(enc.encode(sorted(reference)), queries, 11)
    assert texts == [[sorted(reference)[i] for i in row] for row in want_rows.tolist()]
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def test_a_damaged_snapshot_is_rebuilt_from_sqlite(tmp_path, monkeypatch):
    enc = FakeEncoder()
    monkeypatch.setattr(local, "COMPACT_MIN", 1)
    add_questions(tmp_path / "ix", enc, QUESTIONS)
    (snap,) = snapshots(tmp_path / "ix")
    (tmp_path / "ix" / snap / "vectors.faiss").write_bytes(b"not a faiss file")
    with LocalStore(tmp_path / "ix") as store:
        assert store.count == 5
        (scores,), (ids,) = store.search(enc.encode(["What is your age?"]), 1)
        assert scores[0] == pytest.approx(1.0, abs=1e-6) and store.get([ids[0]])[ids[0]].user_id == "a2"


def test_hnsw_ef_search_is_recorded_and_overridden_in_this_process_only(tmp_path):
    add_questions(tmp_path / "ix", FakeEncoder(), QUESTIONS, kind="hnsw")
    with LocalStore(tmp_path / "ix") as store:
        assert store.ef_search == store.manifest["hnsw"]["ef_search"] == HnswConfig().ef_search
        store.ef_search = 7
        assert store.ef_search == 7
        add_questions(tmp_path / "ix", FakeEncoder(), [Question("n", "A new one?")])  # another writer
        store.add([Question("m", "And another?")], FakeEncoder().encode(["And another?"]))
        assert store.ef_search == 7 and store.count == 7
    with LocalStore(tmp_path / "ix") as store:
        assert store.ef_search == HnswConfig().ef_search
    add_questions(tmp_path / "flat", FakeEncoder(), QUESTIONS)
    with LocalStore(tmp_path / "flat") as store, pytest.raises(InputError, match="--ef-search applies to HNSW indexes; .* is flat"):
        store.ef_search = 64


def test_kind_is_chosen_at_creation(tmp_path):
    add_questions(tmp_path / "ix", FakeEncoder(), QUESTIONS, kind="hnsw")
    with pytest.raises(InputError, match="is a hnsw index; leave out --kind to append, or use another --index"):
        LocalStore(tmp_path / "ix", create={"kind": "flat"})
    with pytest.raises(InputError, match="unknown index kind 'ivf'; use one of: flat, hnsw"):
        LocalStore(tmp_path / "new", create={"kind": "ivf"})
    assert not (tmp_path / "new").exists()


def test_missing_foreign_corrupt_and_newer_indexes_are_refused(tmp_path):
    with pytest.raises(IndexStoreError, match="no index at .*; build one with: dupfinder index FILE --index"):
        LocalStore(tmp_path / "none")
    enc = FakeEncoder()
    ix = tmp_path / "ix"
    add_questions(ix, enc, QUESTIONS)
    with pytest.raises(IndexStoreError, match="was built with model fake0000 .*, not other"):
        open_local(ix, FakeEncoder(fingerprint="other"))
    with pytest.raises(IndexStoreError, match="was built with model fake0000"):
        add_questions(ix, FakeEncoder(fingerprint="other"), [Question("x", "x?")])
    assert state(ix) == (5, 5)

    manifest = json.loads((ix / MANIFEST).read_text())
    set_manifest(ix, format_version=local.FORMAT_VERSION + 1)
    with pytest.raises(IndexStoreError, match=f"index format {local.FORMAT_VERSION + 1}; this dupfinder reads {local.FORMAT_VERSION}: upgrade dupfinder"):
        LocalStore(ix)
    (ix / MANIFEST).write_text("{not json")
    with pytest.raises(IndexStoreError, match="manifest.json is corrupt"):
        LocalStore(ix)
    (ix / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "dimension"}))
    with pytest.raises(IndexStoreError, match="manifest.json lacks dimension; rebuild the index"):
        LocalStore(ix)
    (ix / MANIFEST).write_text(json.dumps(manifest))
    (ix / local.DATABASE).write_bytes(b"garbage" * 1000)
    for suffix in ("-wal", "-shm"):
        Path(f"{ix / local.DATABASE}{suffix}").unlink(missing_ok=True)
    with pytest.raises(IndexStoreError, match=f"{local.DATABASE} is corrupt or unreadable .*; rebuild the index"):
        LocalStore(ix)


def test_default_location_follows_env(monkeypatch, tmp_path):
    assert default_location() == str(tmp_path / "home" / "indexes" / "default")  # conftest sets DUPFINDER_HOME
    monkeypatch.setenv("DUPFINDER_INDEX", str(tmp_path / "mine"))
    assert default_location() == str(tmp_path / "mine")
    monkeypatch.delenv("DUPFINDER_INDEX")
    monkeypatch.delenv("DUPFINDER_HOME")
    assert default_location() == str(Path("indexes") / "default")


def write_format_1(directory: Path, enc: FakeEncoder, questions: list[Question], removed: int) -> None:
    """A folder as dupfinder 0.x wrote it: manifest + gen-N/ (vectors.faiss with ids, meta.db); the
    first `removed` ids were deleted before, so the next id is past them."""
    import faiss

    gen = directory / "gen-3"
    gen.mkdir(parents=True)
    ids = np.arange(removed, removed + len(questions), dtype=np.int64)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(enc.dim))
    index.add_with_ids(enc.encode([q.text for q in questions]), ids)
    faiss.write_index(index, str(gen / "vectors.faiss"))
    with sqlite3.connect(gen / "meta.db") as db:
        db.execute("CREATE TABLE questions (id INTEGER PRIMARY KEY, user_id TEXT, text TEXT NOT NULL, text_hash TEXT NOT NULL, "
                   "source TEXT, added TEXT NOT NULL)")
        from dupfinder.store.base import text_hash

        db.executemany("INSERT INTO questions VALUES (?, ?, ?, ?, ?, ?)",
                       [(int(i), q.user_id, q.text, text_hash(q.text), q.source, "2026-11-01T00:00:00+00:00") for i, q in zip(ids, questions)])
    from dupfinder.engine import model_record

    manifest = {"format_version": 1, "generation": 3, "kind": "flat", "metric": "inner_product", "dimension": enc.dim,
                "count": len(questions), "next_id": removed + len(questions), "model": model_record(enc), "created": "2026-11-01T00:00:00+00:00",
                "scan": {**vars(ScanConfig())}}
    (directory / MANIFEST).write_text(json.dumps(manifest))
    (directory / "gen-2").mkdir()  # the previous generation, kept for readers


def test_a_format_1_folder_is_migrated_on_open_keeping_every_id(tmp_path):
    enc = FakeEncoder()
    ix = tmp_path / "ix"
    write_format_1(ix, enc, QUESTIONS, removed=2)
    with LocalStore(ix) as store:
        assert store.count == 5 and read_manifest(ix)["format_version"] == local.FORMAT_VERSION
        records = store.get(range(7))
        assert {i: (r.user_id, r.text) for i, r in records.items()} == {i + 2: (q.user_id, q.text) for i, q in enumerate(QUESTIONS)}
        ids, vectors = store.all_vectors()
        np.testing.assert_array_equal(vectors, enc.encode([records[i].text for i in ids.tolist()]))
    assert not list(ix.glob("gen-*"))
    add_questions(ix, enc, [Question("n1", "A new one")])
    with LocalStore(ix) as store:
        assert [i for i, r in store.get(range(10)).items() if r.user_id == "n1"] == [7]  # past every id the old store gave


READER = """
import sys, numpy as np
from pathlib import Path
from dupfinder.store.local import LocalStore
directory, stop = Path(sys.argv[1]), Path(sys.argv[2])
rng = np.random.default_rng(0)
searches, counts = 0, []
with LocalStore(directory) as store:  # one open store for the whole run, as a server keeps one
    while True:
        done = stop.exists()  # read before the search: the last search then sees every write
        q = rng.standard_normal((1, store.dim)).astype(np.float32)
        scores, ids = store.search(q, 3)
        records = store.get(ids[0].tolist())
        assert all(i in records for i in ids[0].tolist() if i >= 0), "a FAISS id without its SQLite row"
        counts.append(store.count)
        searches += 1
        if searches == 1:
            print("reading", flush=True)  # the writer starts once every reader has opened the store
        if done:
            break
assert counts == sorted(counts), "a reader saw the store shrink"
print(searches, counts[-1])
"""


def test_two_readers_see_what_a_writer_appends(tmp_path):
    enc = FakeEncoder()
    ix, stop = tmp_path / "ix", tmp_path / "stop"
    add_questions(ix, enc, QUESTIONS)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(ix), str(stop)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        assert [r.stdout.readline() for r in readers] == ["reading\n"] * 2, [r.stderr.read() for r in readers]
        for round in range(15):
            add_questions(ix, enc, [Question(f"r{round}-{i}", f"round {round} question {i}") for i in range(50)])
    finally:
        stop.touch()
        outs = [r.communicate(timeout=60) for r in readers]
    for r, (out, err) in zip(readers, outs):
        assert r.returncode == 0, err
        searches, last_count = map(int, out.split())
        assert searches > 0 and last_count == 5 + 15 * 50  # a long-lived reader sees every write
    assert state(ix) == (5 + 15 * 50,) * 2


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
    assert state(ix) == (5 + 2 * 5 * 20,) * 2


# `dupfinder index` that stops at a chosen point of its work, tells the test through a pipe, and waits
# there to be killed: the test kills it at that point, not at whatever point a timer reaches
KILLABLE_INDEX = r"""
import contextlib, os, sys, time

point, fd, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def stop_here():
    os.write(fd, point.encode() + b"\n")
    while True:  # short sleeps, so a SIGINT is acted on at once
        time.sleep(0.01)


if point == "encoding":  # after the first batch is encoded, before the store is touched
    from dupfinder.progress import Progress

    update = Progress.update

    def hooked(self, n=1, **fields):
        update(self, n, **fields)
        stop_here()

    Progress.update = hooked
elif point == "committing":  # inside the write transaction: every row inserted, not yet committed
    from dupfinder.store.local import LocalStore

    write = LocalStore._write

    @contextlib.contextmanager
    def hooked(self):
        with write(self):
            yield
            stop_here()

    LocalStore._write = hooked
elif point == "compacting":  # the batch committed; its snapshot written, not yet named the current one
    from dupfinder.store import local
    from dupfinder.store.vectors import VectorIndex

    local.COMPACT_MIN = 1  # a compaction after every change (opening the store compacts too: not that one)
    write, save, committed = local.LocalStore._write, VectorIndex.save, []

    @contextlib.contextmanager
    def counted(self):
        with write(self):
            yield
        committed.append(True)

    def hooked(self, folder):
        save(self, folder)
        if committed:
            stop_here()

    local.LocalStore._write = counted
    VectorIndex.save = hooked
else:
    raise SystemExit(f"unknown point {point}")

from dupfinder.cli import cli

cli(args, prog_name="dupfinder")
"""


def index_until(point: str, args: list[str]) -> subprocess.Popen:
    """`dupfinder index ARGS` in a child process, returned once it has stopped at `point`."""
    read_end, write_end = os.pipe()
    # a shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt:
    # give the child the default disposition so Ctrl-C is tested however the suite was started
    p = subprocess.Popen([sys.executable, "-c", KILLABLE_INDEX, point, str(write_end), "index", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=(write_end,),
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 120)  # a bound for a hung child, not a timing
        said = os.read(read_end, 100) if ready else b""
    finally:
        os.close(read_end)
    if said != point.encode() + b"\n":
        p.kill()
        _, err = p.communicate(timeout=30)
        pytest.fail(f"dupfinder index never reached {point} (it said {said!r}): {err}")
    return p


def write_questions(path: Path, n: int, seed: int) -> None:
    words = "how what why when is are do does the a best way to learn make get python india money life".split()
    rng = np.random.default_rng(seed)
    path.write_text("\n".join(" ".join(rng.choice(words, size=8)) + f" {i}?" for i in range(n)) + "\n")


def test_killed_index_loses_nothing_committed_and_keeps_nothing_else(tmp_path, tiny_model, monkeypatch):
    ix = tmp_path / "ix"
    first, second, third = tmp_path / "first.txt", tmp_path / "second.txt", tmp_path / "third.txt"
    write_questions(first, 50, seed=1)
    write_questions(second, 60, seed=2)
    write_questions(third, 30, seed=3)
    r = CliRunner().invoke(cli, ["index", str(first), "--index", str(ix), "--model", str(tiny_model)])
    assert r.exit_code == 0, r.output
    manifest = (ix / MANIFEST).read_bytes()
    assert state(ix) == (50, 50)
    args = [str(second), "--index", str(ix), "--threads", "1"]

    # Ctrl-C while encoding
    p = index_until("encoding", args)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) != 0
    assert state(ix) == (50, 50)

    # SIGKILL inside the write transaction: none of the batch is kept
    p = index_until("committing", args)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert state(ix) == (50, 50)

    # SIGKILL while compacting after the commit: the batch is kept, the half-made snapshot is not used
    p = index_until("compacting", args)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert state(ix) == (110, 110)
    assert (ix / MANIFEST).read_bytes() == manifest  # written once, at creation
    left = [s for s in snapshots(ix) if s.endswith(f"-{p.pid}")]
    assert left  # the snapshot it wrote and never named

    # the next writer compacts and clears what the killed one left
    monkeypatch.setattr(local, "COMPACT_MIN", 1)
    r = CliRunner().invoke(cli, ["index", str(third), "--index", str(ix)])
    assert r.exit_code == 0, r.output
    assert state(ix) == (140, 140)
    assert not set(left) & set(snapshots(ix)) and len(snapshots(ix)) <= 2
    assert not [p for p in ix.iterdir() if "tmp" in p.name]
    r = CliRunner().invoke(cli, ["query", "how to learn python 3?", "--index", str(ix), "-k", "140", "--json"])
    assert r.exit_code == 0 and len(json.loads(r.output)["hits"]) == 140


def scan_store(directory: Path, enc: FakeEncoder, questions: list[Question], **scan) -> None:
    """A flat store whose scan (see ScanConfig) has these settings, holding `questions`."""
    add_questions(directory, enc, questions[:1])
    set_manifest(directory, scan={**vars(ScanConfig()), **scan})
    add_questions(directory, enc, questions[1:])


def scan_corpus(n: int) -> list[Question]:
    return [Question(f"s{i}", f"scan question {i}") for i in range(n)]


def test_flat_scan_returns_exact_scores_and_matches_exact_search(tmp_path, monkeypatch):
    enc = FakeEncoder(dim=16)
    qs = scan_corpus(600)
    scan_store(tmp_path / "ix", enc, qs, min_count=500, candidates=40)
    rng = np.random.default_rng(3)
    queries = enc.encode([q.text for q in qs[:9]]) + 0.4 * rng.standard_normal((9, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    db = enc.encode([q.text for q in qs])
    want_scores, want_rows = exact_search(db, queries, 10)
    with LocalStore(tmp_path / "ix") as store:
        text_of = {i: r.text for i, r in store.get(range(-1, 700)).items()}
        row_of = {q.text: i for i, q in enumerate(qs)}

        def rows(ids):
            return np.array([[row_of[text_of[i]] for i in r] for r in ids.tolist()])

        assert store.vectors.scan is not None  # the scan path is what is tested here
        scores, ids = store.search(queries, 10)  # 9 queries: the scan path
        # every returned score is the exact float32 cosine of the returned question
        np.testing.assert_allclose(scores, np.take_along_axis(queries @ db.T, rows(ids), axis=1), atol=1e-6)
        assert (np.diff(scores, axis=1) <= 0).all()
        scores, ids = store.search(np.repeat(queries, 2, axis=0), 10)  # a batch takes the scan path too
        np.testing.assert_allclose(scores, np.take_along_axis(np.repeat(queries, 2, axis=0) @ db.T, rows(ids), axis=1), atol=1e-6)
        scores, ids = store.vectors.search(np.repeat(queries, 2, axis=0), 10, exact=True)  # every vector compared
        np.testing.assert_allclose(scores, np.repeat(want_scores, 2, axis=0), atol=1e-6)
        assert (rows(ids) == np.repeat(want_rows, 2, axis=0)).all()
        monkeypatch.setattr(store.vectors.scan_config, "candidates", 600)  # every vector a candidate: exact
        scores, ids = store.search(queries, 10)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)
        assert (rows(ids) == want_rows).all()
        store.remove(["s3", "s7"])
        (hits,), (ids,) = store.search(enc.encode(["scan question 8"]), 3)
        assert text_of[ids[0]] == "scan question 8" and hits[0] == pytest.approx(1.0, abs=1e-6)
        _, ids = store.search(enc.encode(["scan question 3", "scan question 7"]), 10)
        assert not {"scan question 3", "scan question 7"} & {text_of[i] for i in ids.ravel().tolist()}
        assert store.compact() and store.vectors.scan.ntotal == 598  # purged, and the scan rebuilt
    (snap,) = snapshots(tmp_path / "ix")
    assert (tmp_path / "ix" / snap / SCAN_FILE).is_file()


def test_a_damaged_scan_file_falls_back_to_exact_search(tmp_path, monkeypatch):
    enc = FakeEncoder(dim=16)
    monkeypatch.setattr(local, "COMPACT_MIN", 1)
    scan_store(tmp_path / "ix", enc, scan_corpus(40), min_count=10, candidates=1)
    for snap in snapshots(tmp_path / "ix"):
        (tmp_path / "ix" / snap / SCAN_FILE).write_bytes(b"not a faiss file")
    queries = enc.encode([f"scan question {i}" for i in (5, 17, 33)])
    with LocalStore(tmp_path / "ix") as store:
        assert store.vectors.scan is None
        (scores,), (ids,) = store.search(queries[:1], 1)
        assert store.get([ids[0]])[ids[0]].text == "scan question 5" and scores[0] == pytest.approx(1.0, abs=1e-6)
