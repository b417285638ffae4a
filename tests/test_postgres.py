"""The PostgreSQL store against a real server (pgserver's PostgreSQL 16 with pgvector, started once
for the module in a temp folder): the store-protocol tests of test_store.py (the same functions, with
the `backend` fixture here), what this store adds (URIs, catalog, migrations, writer lock, pool), the
CLI with a postgresql:// --index, and the faults (wrong password, no server, no pgvector, a table
of another model, the server or a writer killed mid-batch) as one-line errors that lose nothing
committed and duplicate nothing. Skipped, with the reason, where the postgres extra is not installed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="the postgres extra is not installed: pip install '.[postgres]'")
pytest.importorskip("pgvector", reason="the postgres extra is not installed: pip install '.[postgres]'")

import test_store  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from pg_server import PASSWORD, PgServer, binaries, free_port  # noqa: E402
from test_store import *  # noqa: E402,F401,F403  (the protocol tests, run here against PostgreSQL)
from test_store import DIM, ENC, MODEL, QUESTIONS, Backend, add, random_corpus  # noqa: E402

from dupfinder.cli import cli  # noqa: E402
from dupfinder.errors import IndexStoreError, InputError  # noqa: E402
from dupfinder.store import open_store  # noqa: E402
from dupfinder.store.base import Question  # noqa: E402
from dupfinder.store.postgres import HnswSettings, PostgresStore, parse_location  # noqa: E402
from dupfinder.store.pg_wire import graph_precision  # noqa: E402

TABLES = itertools.count()


@pytest.fixture(scope="module")
def pg():
    """One PostgreSQL server for the module, with a database `dupfinder` that has pgvector."""
    if binaries() is None:
        pytest.skip("no PostgreSQL binaries: pip install pgserver (in the test-postgres extra), or set DUPFINDER_PG_BIN")
    server = PgServer().start()
    server.create_database("dupfinder")
    yield server
    server.cleanup()


def new_table() -> str:
    return f"t{os.getpid()}_{next(TABLES)}"


def make_store(pg, kind: str | None = "hnsw", table: str | None = None, model: dict = MODEL, dim: int = DIM) -> PostgresStore:
    """A new, empty store as Engine.for_writing opens one (over the Unix socket: its location reopens it)."""
    store = PostgresStore(pg.socket_uri("dupfinder", table or new_table()), create={"kind": kind})
    store.set_model(model, dim)
    return store


# ---------------------------------------------------------------- the protocol tests of test_store.py


@pytest.fixture(params=["hnsw", "flat"], ids=lambda kind: f"postgres-{kind}")
def backend(request, pg) -> Backend:
    kind = request.param
    return Backend(f"postgres-{kind}", lambda folder: make_store(pg, kind), reopen=lambda s: PostgresStore(s.location),
                   exact=kind == "flat")


def test_count_info_and_sources(store, reference, backend):
    # test_store's version names the kind of each backend it knows by name; the check is the same
    test_store.test_count_info_and_sources(store, reference, dataclasses.replace(backend, name=f"local-{store.kind}"))


# ---------------------------------------------------------------- locations


def test_location_strips_table_and_never_shows_the_password():
    w = parse_location("postgresql://app:pa55@db.example:6543/site?table=qs&sslmode=disable")
    assert (w.table, w.database, w.user, w.password) == ("qs", "site", "app", "pa55")
    assert "table" not in w.conninfo and "sslmode=disable" in w.conninfo and "pa55" in w.conninfo
    assert w.shown == "postgresql://app@db.example:6543/site?sslmode=disable&table=qs"
    w = parse_location("postgresql:///site?host=/var/run/postgresql&password=x&table=a_1")
    assert w.shown == "postgresql:///site?host=/var/run/postgresql&table=a_1" and w.table == "a_1"
    assert parse_location("postgres://u@h/db").table == "dupfinder_questions"
    with pytest.raises(InputError, match=r"table='Bad-Name' in postgresql://u@h/db\?table=Bad-Name: use lower-case letters"):
        parse_location("postgresql://u:pw@h/db?table=Bad-Name")
    with pytest.raises(IndexStoreError, match=r"is not a valid PostgreSQL URI .*; use postgresql://USER@HOST:PORT/DATABASE\?table=NAME"):
        parse_location("postgresql://u@h/db?nonsense_option=1")


# ---------------------------------------------------------------- what this store adds


def test_schema_catalog_and_migrations(pg):
    store = make_store(pg, table="schema_check")
    add(store, QUESTIONS)
    columns = pg.psql("SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) "
                      "FROM information_schema.columns WHERE table_name = 'schema_check'", db="dupfinder")
    assert columns == ("id bigint, user_id text, text text, text_hash text, source text, added timestamp with time zone, "
                       "embedding USER-DEFINED")
    assert pg.psql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'schema_check'::regclass "
                   "AND attname = 'embedding'", db="dupfinder") == f"vector({DIM})"
    indexes = pg.psql("SELECT indexdef FROM pg_indexes WHERE tablename = 'schema_check' ORDER BY indexname", db="dupfinder")
    precision = graph_precision("auto", pg.psql("SELECT extversion FROM pg_extension WHERE extname = 'vector'", db="dupfinder"))
    key = f"((embedding)::halfvec({DIM})) halfvec_ip_ops" if precision == "halfvec" else "embedding vector_ip_ops"
    assert f"USING hnsw ({key}) WITH (m='16', ef_construction='128')" in indexes
    assert "UNIQUE INDEX schema_check_user_id_key" in indexes and "(text_hash)" in indexes
    row = json.loads(pg.psql("SELECT row_to_json(c) FROM dupfinder_indexes c WHERE name = 'schema_check'", db="dupfinder"))
    assert (row["schema_version"], row["kind"], row["metric"], row["dimension"], row["model"]) == (2, "hnsw", "inner_product", DIM, MODEL)
    assert row["hnsw"] == {"m": 16, "ef_construction": 128, "ef_search": 144, "precision": precision} and row["versions"]["pgvector"]
    assert pg.psql("SELECT string_agg(version || ' ' || name, ', ' ORDER BY version) FROM dupfinder_migrations "
                   "WHERE index_name = 'schema_check'", db="dupfinder") == "1 m001_questions_table, 2 m002_hnsw_index"
    store.close()


def test_an_older_schema_is_migrated_on_open_and_a_newer_one_refused(pg):
    store = make_store(pg, table="old_schema")
    add(store, QUESTIONS)
    store.close()
    # as an index written before m002 would be: no HNSW graph, schema version 1
    pg.psql("DROP INDEX old_schema_embedding_hnsw; DELETE FROM dupfinder_migrations WHERE index_name = 'old_schema' AND version = 2; "
            "UPDATE dupfinder_indexes SET schema_version = 1 WHERE name = 'old_schema'", db="dupfinder")
    with PostgresStore(pg.socket_uri("dupfinder", "old_schema")) as again:
        assert again.meta["schema_version"] == 2 and again.count == 5
    assert pg.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'old_schema_embedding_hnsw'", db="dupfinder") == "1"
    pg.psql("UPDATE dupfinder_indexes SET schema_version = 99 WHERE name = 'old_schema'", db="dupfinder")
    with pytest.raises(IndexStoreError, match=r"was written by a newer dupfinder \(schema version 99; this one knows up to 2\): upgrade dupfinder"):
        PostgresStore(pg.socket_uri("dupfinder", "old_schema"))


def test_a_table_that_is_not_an_index_and_a_missing_index_are_refused(pg):
    pg.psql("CREATE TABLE people (name text)", db="dupfinder")
    uri = pg.socket_uri("dupfinder", "people")
    for create in (None, {"kind": None}):
        with pytest.raises(IndexStoreError, match=r"table people in .* is not a dupfinder index \(no row in dupfinder_indexes\); choose another table"):
            PostgresStore(uri, create=create)
    with pytest.raises(IndexStoreError, match=r"no index at postgresql://postgres@/dupfinder\?host=.*&table=nothing_here: build one with "
                                              r"`dupfinder index FILE --index"):
        open_store(pg.socket_uri("dupfinder", "nothing_here"))
    store = make_store(pg)
    add(store, QUESTIONS)
    with pytest.raises(InputError, match=r"is a hnsw index; leave out --kind to append, or use another table"):
        PostgresStore(store.location, create={"kind": "flat"})
    with pytest.raises(InputError, match="unknown index kind 'ivf'"):
        PostgresStore(store.location, create={"kind": "ivf"})


def test_large_first_batch_builds_the_graph_after_copying(pg, monkeypatch):
    from dupfinder.store import postgres

    monkeypatch.setattr(postgres, "BULK_MIN", 50)  # the bulk path on a small batch
    store = make_store(pg)
    corpus = random_corpus(120, seed=3)
    add(store, corpus)
    add(store, [Question("one", "added to the graph row by row")])  # small against the table: inserted into the graph
    queries = ENC.encode([q.text for q in corpus[:20]])
    _, ids = store.search(queries, 1)
    assert [store.get([i])[i].text for i in ids[:, 0]] == [q.text for q in corpus[:20]]
    assert pg.psql(f"SELECT count(*) FROM pg_indexes WHERE tablename = '{store.table}' AND indexdef LIKE '%hnsw%'", db="dupfinder") == "1"
    store.close()


def test_graph_precision_follows_the_servers_pgvector():
    assert [graph_precision("auto", v) for v in ("0.6.2", "0.7.0", "0.8.2", "1.0", None)] == ["vector", "halfvec", "halfvec", "halfvec", "vector"]
    assert graph_precision("vector", "0.8.2") == "vector"
    from dupfinder.store.pg_migrations import half

    # an index created before the setting recorded no precision: its graph is float32 and stays so
    assert not half({"m": 16, "ef_construction": 64, "ef_search": 200}) and not half(None)
    assert half({"m": 16, "ef_construction": 128, "ef_search": 144, "precision": "halfvec"})
    with pytest.raises(InputError, match="unknown HNSW precision 'double'"):
        graph_precision("double", "0.8.2")


@pytest.mark.parametrize("precision", ["auto", "vector"])
def test_a_half_precision_graph_keeps_float32_scores_and_order(pg, precision, monkeypatch):
    from dupfinder.store import postgres

    monkeypatch.setattr(postgres, "BULK_MIN", 50)  # the graph built in one pass after the copy, as for a corpus
    store = PostgresStore(pg.socket_uri("dupfinder", new_table()), create={"kind": "hnsw"}, hnsw=HnswSettings(precision=precision))
    store.set_model(MODEL, DIM)
    corpus = random_corpus(300, seed=5)
    add(store, corpus)
    add(store, [Question("late", "added to the graph row by row")])
    ids, vectors = store.vectors()
    queries = ENC.encode([q.text for q in corpus[:40]] + ["added to the graph row by row"])
    scores, found = store.search(queries, 5)
    exact = queries @ vectors.T  # float32 inner products with every stored vector
    for row in range(len(queries)):
        assert found[row, 0] == ids[np.argmax(exact[row])]  # each question finds itself first
        # the float32 scores of what was found, best first, whatever precision the graph holds
        np.testing.assert_allclose(scores[row], exact[row][np.searchsorted(ids, found[row])], atol=1e-6)
        assert np.all(np.diff(scores[row]) <= 0)
    # what Engine.query uses: the same hits, with their records read in the same statement
    scores2, found2, records = store.search_records(queries, 5)
    assert np.array_equal(found2, found) and np.array_equal(scores2, scores)
    assert records == store.get(found.ravel().tolist()) and len(records) == len(set(found.ravel().tolist()))
    expected = graph_precision(precision, store.info()["versions"]["pgvector"])
    assert store.info()["hnsw"]["precision"] == expected
    from psycopg import sql

    def explain(conn):
        conn.execute("SET enable_seqscan = off")  # a table this small is otherwise scanned: is the graph usable?
        return "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + store._search_sql(), (queries[0], queries[0], 5)
                                                    if expected == "halfvec" else (queries[0], 5)).fetchall())

    assert f"Index Scan using {store.table}_embedding_hnsw" in store._read(explain, "explaining")
    store.close()


def test_ef_search_is_set_per_connection_and_raised_for_a_large_k(pg):
    store = make_store(pg)
    add(store, random_corpus(250, seed=4))
    assert store.ef_search == 144
    store.ef_search = 7
    _, ids = store.search(ENC.encode(["random question 1"]), 5)
    assert (ids >= 0).all()
    _, ids = store.search(ENC.encode(["random question 1"]), 240)  # pgvector returns at most ef_search rows: raised to k
    assert (ids >= 0).sum() >= 230
    flat = make_store(pg, kind="flat")
    with pytest.raises(InputError, match="--ef-search applies to HNSW indexes"):
        flat.ef_search = 10
    store.close()
    flat.close()


def test_concurrent_writers_never_store_a_question_twice(pg, monkeypatch):
    """The second writer waits for the first one's lock, then finds its questions stored."""
    first = make_store(pg)
    second = PostgresStore(first.location, create={"kind": None})
    second.set_model(MODEL, DIM)
    corpus = random_corpus(80, seed=5)
    inside = threading.Event()
    original = PostgresStore._insert

    def slow_insert(self, *args, **kw):
        original(self, *args, **kw)
        if self is first:
            inside.set()
            time.sleep(0.5)  # rows written, not committed, lock held

    monkeypatch.setattr(PostgresStore, "_insert", slow_insert)
    reports = {}
    t = threading.Thread(target=lambda: reports.setdefault("first", add(first, corpus[:60])))
    t.start()
    assert inside.wait(30)
    reports["second"] = add(second, corpus[30:])  # planned outside: every one of them looks new
    t.join()
    assert (reports["first"].added, reports["second"].added, reports["second"].already_indexed) == (60, 20, 30)
    assert first.count == 80
    assert pg.psql(f"SELECT count(*) FROM (SELECT text_hash FROM {first.table} GROUP BY text_hash HAVING count(*) > 1) d",
                   db="dupfinder") == "0"
    first.close()
    second.close()


def test_pool_serves_threads_and_survives_a_restart(pg):
    store = make_store(pg)
    corpus = random_corpus(200, seed=6)
    add(store, corpus)
    queries = ENC.encode([q.text for q in corpus[:40]])
    want = store.search(queries, 5)
    store.use_pool(max_size=4)
    results = [None] * 8

    def worker(i):
        results[i] = store.search(queries, 5)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        np.testing.assert_array_equal(got[1], want[1])
    pg.restart()
    np.testing.assert_array_equal(store.search(queries, 5)[1], want[1])
    assert add(store, [Question("after", "written after the restart")]).added == 1
    store.close()


def test_lookup_and_get_vectors(pg):
    store = make_store(pg)
    add(store, QUESTIONS)
    found = store.lookup(["a1", "a5", "nope", "a1"])
    assert sorted(found) == ["a1", "a5"] and found["a1"].text == "How old are you?"
    ids = [found["a5"].id, found["a1"].id, found["a5"].id]
    np.testing.assert_allclose(store.get_vectors(ids), ENC.encode([QUESTIONS[4].text, QUESTIONS[0].text, QUESTIONS[4].text]), atol=1e-7)
    assert store.get_vectors([]).shape == (0, DIM)
    with pytest.raises(KeyError, match="store ids \\[123456\\]"):
        store.get_vectors([found["a1"].id, 123456])
    ids, vectors = store.vectors()
    assert len(ids) == 5 and vectors.shape == (5, DIM)
    store.close()


def test_a_restarted_server_is_reconnected_to(pg):
    store = make_store(pg)
    add(store, QUESTIONS)
    pg.restart()
    assert store.count == 5  # a read reconnects
    pg.restart()
    assert add(store, [Question("n", "a new question after a restart")]).count == 6  # a write checks its connection first
    store.close()


# ---------------------------------------------------------------- the CLI


def run(*args, input=None, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env)


@pytest.fixture
def built(pg, tiny_model, pairs_file):
    """An index of the tiny pairs file in PostgreSQL (over TCP with a password), built with the tiny model."""
    uri = pg.uri("dupfinder", new_table())
    r = run("index", pairs_file, "--index", uri, "--model", tiny_model)
    assert r.exit_code == 0, r.output
    return uri


def test_cli_index_query_info_remove(built, pg, pairs_file, tmp_path):
    from dupfinder.io import load_questions

    n = len(load_questions(pairs_file))
    shown = parse_location(built).shown
    assert PASSWORD not in shown
    r = run("index", pairs_file, "--index", built)
    assert r.exit_code == 0 and f"updated {shown}: 0 added, {n} already indexed, 0 empty skipped; {n} questions in all" in r.output
    r = run("query", "How old are you?", "--index", built, "-k", "3", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)["hits"]
    assert hits[0]["text"] == "How old are you?" and hits[0]["id"] == "1" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    r = run("query", "How old are you?", "--index", built, "-k", "3", "--ef-search", "20")
    assert r.exit_code == 0 and "How old are you?" in r.output
    r = run("info", "--index", built, "--json")
    info = json.loads(r.output)
    assert (info["index"], info["count"], info["kind"], info["dimension"]) == (shown, n, "hnsw", 16)
    assert PASSWORD not in r.output and info["size_bytes"] > 0
    r = run("remove", "1", "--index", built)
    assert r.exit_code == 0 and r.output == f"removed 1 from {shown}; {n - 1} questions left\n"
    r = run("remove", "1", "--index", built)
    assert r.exit_code == 1 and r.output == f"Error: not in {shown}: 1; nothing was removed\n"
    r = run("query", "How old are you?", "--index", built, "-k", "1", "--json")
    assert json.loads(r.output)["hits"][0]["id"] != "1"
    r = run("info", "--json", env={"DUPFINDER_INDEX": built})  # the URI from the environment
    assert json.loads(r.output)["count"] == n - 1


def test_cli_dedup_against_a_postgres_index(built, tmp_path):
    src = tmp_path / "new.csv"
    src.write_text("id,question\nx1,How old are you?\nx2,Something nobody ever asked before 123\nx3,how old are YOU?\n")
    out = tmp_path / "out.csv"
    r = run("dedup", src, "-o", out, "--against", built)
    assert r.exit_code == 0, r.output
    import csv

    rows = list(csv.DictReader(out.open()))
    assert rows[0]["index_match_id"] == "1" and float(rows[0]["index_match_score"]) == pytest.approx(1.0, abs=1e-4)
    assert rows[2]["index_match_id"] == "1"


def test_cli_flat_kind_and_kind_mismatch(pg, tiny_model, pairs_file):
    uri = pg.uri("dupfinder", new_table())
    assert run("index", pairs_file, "--index", uri, "--model", tiny_model, "--kind", "flat").exit_code == 0
    r = run("index", pairs_file, "--index", uri, "--kind", "hnsw")
    assert r.exit_code == 1 and r.output == f"Error: {parse_location(uri).shown} is a flat index; leave out --kind to append, or use another table\n"
    r = run("query", "How old are you?", "--index", uri, "--ef-search", "10")
    assert r.exit_code == 2 and "--ef-search applies to HNSW indexes" in r.output


# ---------------------------------------------------------------- faults: one line, exit 1


def test_wrong_password(built):
    bad = built.replace(PASSWORD, "not-the-password")
    r = run("query", "How old are you?", "--index", bad)
    assert r.exit_code == 1
    assert r.output == (f"Error: PostgreSQL refused the password of user postgres at {parse_location(built).shown}: "
                        f"check the user and password in the URI (or PGPASSWORD, ~/.pgpass)\n")
    assert "not-the-password" not in r.output


def test_unreachable_server_and_missing_database(pg, tiny_model, pairs_file):
    port = free_port()
    uri = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/dupfinder?table=q"
    r = run("index", pairs_file, "--index", uri, "--model", tiny_model)
    assert r.exit_code == 1
    assert r.output.startswith(f"Error: cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:{port}/dupfinder?table=q (Connection refused")
    assert r.output.endswith("is the server running, and are the host and port right?\n") and r.output.count("\n") == 1
    r = run("info", "--index", pg.uri("nosuchdb", "q"))
    assert r.exit_code == 1 and r.output == (f"Error: database nosuchdb does not exist on the server of {parse_location(pg.uri('nosuchdb', 'q')).shown}: "
                                             f"create it (createdb nosuchdb) or fix the URI\n")


def test_missing_extension_says_how_to_enable_it(pg, tiny_model, pairs_file):
    pg.create_database("noext", vector=False)
    pg.psql(f"CREATE ROLE webapp LOGIN PASSWORD '{PASSWORD}'; GRANT ALL ON SCHEMA public TO webapp", db="noext")
    uri = pg.uri("noext", "q", user="webapp")
    r = run("index", pairs_file, "--index", uri, "--model", tiny_model)
    assert r.exit_code == 1
    assert r.output == (f"Error: database noext has no vector extension and user webapp may not add it: ask its owner or a superuser "
                        f"to run `CREATE EXTENSION vector;` in database noext ({parse_location(uri).shown})\n")
    # a superuser gets it created with the index
    r = run("index", pairs_file, "--index", pg.uri("noext", "q"), "--model", tiny_model)
    assert r.exit_code == 0, r.output
    assert pg.psql("SELECT extname FROM pg_extension WHERE extname = 'vector'", db="noext") == "vector"


def test_an_index_of_another_model_is_refused(pg, tiny_model, pairs_file):
    store = make_store(pg, model={"path": "/models/other", "fingerprint": "0123456789abcdef", "threshold": 0.7, "default": False}, dim=16)
    store.add(QUESTIONS, np.eye(16, dtype=np.float32)[: len(QUESTIONS)])
    store.close()
    for args in (("query", "How old are you?"), ("index", pairs_file)):
        r = run(*args, "--index", store.location, "--model", tiny_model)
        assert r.exit_code == 1
        assert r.output.splitlines()[-1].startswith(f"Error: {store.location} was built with model 0123456789abcdef (/models/other), not ")
    assert PostgresStore(store.location).count == 5


def test_server_killed_mid_batch_keeps_what_was_committed(pg, monkeypatch):
    store = make_store(pg)
    add(store, QUESTIONS)
    corpus = random_corpus(150, seed=7)
    original = PostgresStore._insert

    def insert_then_crash(self, *args, **kw):
        original(self, *args, **kw)
        pg.kill9()  # every row of the batch sent, none committed

    monkeypatch.setattr(PostgresStore, "_insert", insert_then_crash)
    with pytest.raises(IndexStoreError) as e:
        add(store, corpus)
    assert str(e.value).startswith(f"lost the connection to PostgreSQL at {store.location} while adding to it (")
    assert str(e.value).endswith("no partial batch is stored: run the command again (questions already stored are skipped)")
    assert "\n" not in str(e.value)
    monkeypatch.setattr(PostgresStore, "_insert", original)
    with pytest.raises(IndexStoreError, match="cannot reach PostgreSQL at"):
        store.count  # noqa: B018  (the server is still down)
    pg.restart()  # crash recovery
    assert store.count == 5
    report = add(store, QUESTIONS + corpus)
    assert (report.added, report.already_indexed, report.count) == (150, 5, 155)
    store.close()


WRITER = """
import sys, time, numpy as np
sys.path.insert(0, {tests!r})
from test_store import ENC, MODEL, DIM, random_corpus
from dupfinder.store.postgres import PostgresStore
store = PostgresStore({uri!r}, create={{"kind": None}})
store.set_model(MODEL, DIM)
corpus = random_corpus(300, seed=8)
first, second = corpus[:100], corpus[100:]
store.add(first, ENC.encode([q.text for q in first]))
original = PostgresStore._insert
def insert_then_wait(self, *args, **kw):
    original(self, *args, **kw)
    print("inside", flush=True)
    time.sleep(600)
PostgresStore._insert = insert_then_wait
store.add(second, ENC.encode([q.text for q in second]))
"""


def test_writer_killed_mid_batch_loses_and_duplicates_nothing(pg):
    uri = pg.socket_uri("dupfinder", new_table())
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(tests=str(Path(__file__).parent), uri=uri)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "inside"
    finally:
        proc.kill()  # SIGKILL: no rollback from the client; the server drops its transaction
        proc.wait()
    with PostgresStore(uri, create={"kind": None}) as store:
        assert store.count == 100
        store.set_model(MODEL, DIM)
        corpus = random_corpus(300, seed=8)
        report = add(store, corpus)  # the interrupted run again
        assert (report.added, report.already_indexed, report.count) == (200, 100, 300)


# ---------------------------------------------------------------- the same through `dupfinder index`, killed for real


def many_questions(path: Path, n: int) -> Path:
    with path.open("w") as f:
        f.write("id,question\n")
        for i in range(n):
            f.write(f"m{i},What is the meaning of number {i} in question {i * 7919 % 100003}?\n")
    return path


def wait_for_writes(pg, db: str, timeout: float = 600) -> None:
    """Until a dupfinder connection is in a transaction that has written (its COPY, its HNSW build)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dupfinder' AND backend_xid IS NOT NULL",
                   db=db) != "0":
            return
        time.sleep(0.02)
    raise AssertionError("dupfinder index never started writing")


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["dupfinder", "postgres"])
def test_dupfinder_index_killed_mid_batch(pg, tiny_model, pairs_file, tmp_path, victim):
    uri = pg.uri("dupfinder", new_table())
    exe = [sys.executable, "-m", "dupfinder"]
    first = subprocess.run([*exe, "index", str(pairs_file), "--index", uri, "--model", str(tiny_model)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    with open_store(uri) as store:
        before = store.count
    big = many_questions(tmp_path / "many.csv", 60_000)
    proc = subprocess.Popen([*exe, "index", str(big), "--index", uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_writes(pg, "dupfinder")
    if victim == "dupfinder":
        proc.kill()
        proc.wait()
    else:
        pg.kill9()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1
        last = err.splitlines()[-1]  # after the reader's summary of the file
        assert last.startswith(f"Error: lost the connection to PostgreSQL at {parse_location(uri).shown} while adding to it (")
        assert last.endswith("no partial batch is stored: run the command again (questions already stored are skipped)")
        pg.restart()
    with open_store(uri) as store:
        assert store.count == before
    again = subprocess.run([*exe, "index", str(big), str(pairs_file), "--index", uri], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"60,000 added, {before:,} already indexed" in again.stdout
    assert pg.psql(f"SELECT count(*), count(DISTINCT text_hash), count(DISTINCT user_id) FROM {parse_location(uri).table}",
                   db="dupfinder") == f"{before + 60_000}|{before + 60_000}|{before + 60_000}"
