"""The Milvus store against a real server: Milvus Lite's gRPC server on a free loopback port, reached
through the same pymilvus client a cluster is. The store-protocol tests of test_store.py (each
store held to the brute-force reference) run here on Milvus HNSW and FLAT collections; then what
is Milvus's own (URIs, properties, consistency across clients, flush, idempotent retries), the CLI
commands on a milvus:// index, and the faults: server unreachable, collection missing, a write
refused mid-add, the server killed during `dupfinder index` (slow: they restart servers).

Skipped, saying why, where the `milvus` extra (pymilvus) or milvus-lite is not installed.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path

import milvus_server
import numpy as np
import pytest
from click.testing import CliRunner

if reason := milvus_server.available():
    pytest.skip(reason, allow_module_level=True)

from dupfinder.cli import cli
from dupfinder.engine import Engine, check_model
from dupfinder.errors import IndexStoreError, InputError
from dupfinder.io import load_questions
from dupfinder.store import milvus as milvus_module
from dupfinder.store import open_store
from dupfinder.store.base import Question
from dupfinder.store.milvus import MilvusStore, Retry, parse_uri
from fake_encoder import FakeEncoder
from test_store import (  # noqa: F401  (the protocol tests, collected here with this file's `backend`)
    DIM,
    ENC,
    MODEL,
    QUESTIONS,
    Backend,
    add,
    brute_force,
    random_corpus,
    reference,
    store,
    store_id,
    test_a_new_store_with_only_empty_questions_is_refused,
    test_add_skips_known_ids_normalized_texts_and_empty,
    test_another_text_for_a_stored_id_is_refused_for_the_whole_batch,
    test_get_returns_the_records_and_leaves_out_unknown_ids,
    test_is_a_store_and_starts_empty,
    test_remove_by_user_id_or_store_id_all_or_nothing,
    test_search_gives_the_reference_top_k,
    test_upsert_replaces_the_text_of_a_stored_id,
    test_write_then_reopen_gives_the_same_hits,
)

FAST = Retry(attempts=3, first_s=0.05, cap_s=0.1, timeout_s=10)  # for the tests that expect a failure


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = milvus_server.MilvusLiteServer(tmp_path_factory.mktemp("milvus")).start()
    yield s
    s.remove()


def fresh_name() -> str:
    return "t_" + uuid.uuid4().hex[:16]


def milvus(server, kind: str):
    def make(folder: Path) -> MilvusStore:
        store = MilvusStore(server.uri(fresh_name()), create={"kind": kind})
        store.set_model(MODEL, DIM)
        return store

    return make


@pytest.fixture(params=["milvus-hnsw", "milvus-flat"])
def backend(request, server) -> Backend:
    kind = request.param.split("-")[1]
    return Backend(request.param, milvus(server, kind), reopen=lambda s: MilvusStore(s.location), exact=kind == "flat")



def new_store(server, kind=None, retry=None) -> MilvusStore:
    store = MilvusStore(server.uri(fresh_name()), create={"kind": kind}, retry=retry)
    store.set_model(MODEL, DIM)
    return store


def user_ids(store) -> list:
    """Every stored row's user id (None for those without), duplicates kept."""
    rows = store.client.query(store.address.collection, filter="id >= 0", output_fields=["user_id", "text_hash"],
                              consistency_level="Strong")
    return sorted((r["user_id"] or "", r["text_hash"]) for r in rows)


# ---------------------------------------------------------------- the store's own


def test_count_info_sources_and_properties(server):
    with new_store(server) as s:
        add(s, QUESTIONS)
        s.remove(["a5"])
        info = s.info()
        assert (info["index"], info["count"], info["metric"], info["dimension"], info["kind"]) == (s.location, 4, "inner_product", DIM, "hnsw")
        assert s.sources() == info["sources"] == {"t.csv": 3, "u.csv": 1}
        found = s.lookup(["a1", "a5", "nope", 'odd "id" \\'])
        assert list(found) == ["a1"] and (found["a1"].text, found["a1"].id) == ("How old are you?", store_id(s, "How old are you?"))
        assert info["milvus"]["index"] == {"index_type": "HNSW", "M": 32, "efConstruction": 160, "ef": 96}
        assert info["milvus"]["consistency"] == "Strong" and info["size_bytes"] == 4 * (4 * DIM + 8 * 32)
        props = s.client.describe_collection(s.address.collection)["properties"]
        assert json.loads(props["dupfinder.model"]) == MODEL and props["dupfinder.format_version"] == "1"
        assert (props["dupfinder.dimension"], props["dupfinder.kind"]) == (str(DIM), "hnsw")


def test_uris_are_parsed_and_never_show_a_password():
    a = parse_uri("milvus://ann:p%40ss@db.example:1234/questions?db=prod&secure=true")
    assert (a.host, a.port, a.collection, a.db, a.user, a.password, a.secure) == ("db.example", 1234, "questions", "prod", "ann", "p@ss", True)
    assert a.location == "milvus://db.example:1234/questions?db=prod" and a.uri == "https://db.example:1234"
    assert parse_uri("milvus://localhost/q").port == 19530
    for bad, message in (("milvus://localhost:1234", "names no collection"), ("milvus:///q", "names no host"),
                         ("milvus://h:1/9lives", "is not a Milvus collection name"), ("milvus://h:x/q", "bad port"),
                         ("milvus://u:secret@h:1/q?tls=1", "unknown option tls")):
        with pytest.raises(InputError, match=message) as e:
            parse_uri(bad)
        assert "secret" not in str(e.value)


def test_kind_is_chosen_at_creation_and_ef_search_applies_to_hnsw(server):
    with new_store(server, kind="flat") as s:
        add(s, QUESTIONS)
        assert (s.kind, s.ef_search) == ("flat", None)
        with pytest.raises(InputError, match="--ef-search applies to HNSW indexes"):
            s.ef_search = 64
        with pytest.raises(InputError, match=f"{s.location} is a flat index; leave out --kind to append"):
            MilvusStore(s.location, create={"kind": "hnsw"})
    with new_store(server) as s:
        add(s, QUESTIONS)
        assert (s.kind, s.ef_search) == ("hnsw", 96)
        s.ef_search = 5  # this process only; k above it still gets k results (Milvus needs ef >= k)
        assert s.search(ENC.encode(["How old are you?"]), 5)[1].min() >= 0
        with MilvusStore(s.location) as again:
            assert again.ef_search == 96


def test_a_write_is_seen_at_once_by_another_client(server):
    """Strong consistency: a store opened before the write (another process would be) sees it."""
    with new_store(server) as writer:
        add(writer, QUESTIONS[:2])
        with MilvusStore(writer.location) as reader:
            add(writer, QUESTIONS[2:])
            assert reader.count == 5
            assert store_id(reader, "What is the capital of France?") == store_id(writer, "What is the capital of France?")
            writer.remove(["a5"])
            assert reader.count == 4 and reader.known(QUESTIONS)[0].keys() == {"a1", "a2", "a3"}


def test_a_bulk_add_ends_with_a_flush(server, monkeypatch):
    monkeypatch.setattr(milvus_module, "FLUSH_MIN_ROWS", 50)
    with new_store(server) as s:
        flushes = []
        real = s.client.flush
        monkeypatch.setattr(s.client, "flush", lambda *a, **k: flushes.append(a) or real(*a, **k))
        add(s, random_corpus(49, seed=1))
        assert flushes == []  # a small add leaves sealing to Milvus
        add(s, random_corpus(120, seed=2)[60:])
        assert len(flushes) == 1 and s.count == 109


def test_a_batch_whose_answer_was_lost_is_written_once(server, monkeypatch):
    """The server stored a batch but the client saw a timeout: the retry upserts the same ids."""
    from pymilvus.exceptions import MilvusException

    monkeypatch.setattr(milvus_module, "BATCH_ROWS", 7)
    with new_store(server, retry=FAST) as s:
        real, calls = s.client.upsert, []

        def upsert(*args, **kwargs):
            result = real(*args, **kwargs)
            calls.append(len(args[1]))
            if len(calls) in (2, 3):
                raise MilvusException(code=2, message="Fail connecting to server on 127.0.0.1 (simulated: answer lost)")
            return result

        monkeypatch.setattr(s.client, "upsert", upsert)
        corpus = random_corpus(30, seed=3)
        report = add(s, corpus)
        assert (report.added, report.count) == (30, 30) and sorted(calls) == [2, 7, 7, 7, 7, 7, 7]
        assert len(user_ids(s)) == 30 and len(set(user_ids(s))) == 30


def test_a_write_refused_mid_add_is_completed_by_a_rerun_without_duplicates(server, monkeypatch):
    from pymilvus.exceptions import MilvusException

    monkeypatch.setattr(milvus_module, "BATCH_ROWS", 10)
    corpus = random_corpus(45, seed=4)
    with new_store(server, retry=FAST) as s:
        add(s, corpus[:5])
        real, calls = s.client.upsert, []

        def upsert(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise MilvusException(code=1100, message="invalid parameter: simulated refusal")
            return real(*args, **kwargs)

        monkeypatch.setattr(s.client, "upsert", upsert)
        with pytest.raises(IndexStoreError) as e:
            add(s, corpus)
        assert str(e.value) == (f"Milvus at {s.address.server} refused upsert on {s.location}: invalid parameter: simulated refusal; "
                                "20 of 40 new questions were stored before it: run the command again to add the rest (none is added twice)")
        assert s.count == 25 and len(calls) == 3  # no batch is sent after a refusal
        report = add(s, corpus)
        assert (report.added, report.already_indexed, report.count) == (20, 25, 45)
        assert len(set(user_ids(s))) == len(user_ids(s)) == 45


def test_transient_errors_are_retried_then_reported_in_one_line(server, monkeypatch):
    from pymilvus.exceptions import MilvusException

    with new_store(server, retry=FAST) as s:
        add(s, QUESTIONS)
        real, calls = s.client.search, []

        def flaky(*args, **kwargs):
            calls.append(1)
            if len(calls) < 3:
                raise MilvusException(code=8, message="rate limit exceeded")
            return real(*args, **kwargs)

        monkeypatch.setattr(s.client, "search", flaky)
        assert s.search(ENC.encode(["How old are you?"]), 1)[0][0, 0] == pytest.approx(1.0, abs=1e-5) and len(calls) == 3
        monkeypatch.setattr(s.client, "search", lambda *a, **k: (_ for _ in ()).throw(MilvusException(code=8, message="rate limit exceeded")))
        with pytest.raises(IndexStoreError, match=r"^cannot reach the Milvus server at 127.0.0.1:\d+ after 3 tries \(rate limit exceeded\); start it"):
            s.search(ENC.encode(["How old are you?"]), 1)


def test_unreachable_missing_and_foreign_collections_are_refused(server, monkeypatch):
    monkeypatch.setattr(milvus_module, "RETRY", FAST)
    port = milvus_server.free_port()
    with pytest.raises(IndexStoreError, match=rf"^cannot reach the Milvus server at 127.0.0.1:{port} after 3 tries \(.*\); start it, "
                                              r"or check the host and port of --index$"):
        MilvusStore(f"milvus://127.0.0.1:{port}/q")
    name = fresh_name()
    with pytest.raises(IndexStoreError, match=f"^no collection {name} on the Milvus server at 127.0.0.1:{server.port}; "
                                              f"build it with: dupfinder index FILE --index milvus://127.0.0.1:{server.port}/{name}$"):
        MilvusStore(server.uri(name))
    with new_store(server) as s:  # a collection that is not dupfinder's
        from pymilvus import MilvusClient

        MilvusClient(uri=s.address.uri).create_collection(name, dimension=4)
        with pytest.raises(IndexStoreError, match="is not a dupfinder collection .*; choose another collection name"):
            MilvusStore(server.uri(name))
    with new_store(server) as s:  # dropped while open
        add(s, QUESTIONS)
        s.client.drop_collection(s.address.collection)
        with pytest.raises(IndexStoreError, match=f"^the collection of {s.location} is gone .*; rebuild it with: dupfinder index FILE"):
            s.search(ENC.encode(["How old are you?"]), 1)


def test_another_model_is_refused_and_too_long_values_write_nothing(server):
    with new_store(server) as s:
        add(s, QUESTIONS)
        with MilvusStore(s.location) as again, pytest.raises(IndexStoreError, match="was built with model fake0000"):
            check_model(again.model, FakeEncoder(dim=DIM, fingerprint="other000"), again.location)
        with pytest.raises(InputError, match="a question is longer than the 65,535 bytes a Milvus index holds: 'xxx.*; nothing was added"):
            add(s, [Question("ok", "fine"), Question("long", "x" * 70_000)])
        assert s.count == 5


def test_get_vectors_from_the_last_search_or_the_server(server):
    with new_store(server) as s:
        add(s, QUESTIONS)
        _, ids = s.search(ENC.encode(["How old are you?"]), 2)
        other = store_id(s, "Where do you live?")  # the last search now: ids[0] are no longer in it
        texts = {r.id: r.text for r in s.get([*ids[0].tolist(), other]).values()}
        got = s.get_vectors([other, *ids[0].tolist(), other])
        np.testing.assert_allclose(got, ENC.encode([texts[i] for i in [other, *ids[0].tolist(), other]]), atol=1e-6)
        with pytest.raises(KeyError, match="store ids"):
            s.get_vectors([other + 1000])  # ids of one add are consecutive


def test_engine_queries_through_milvus_give_the_brute_force_hits(server):
    corpus = random_corpus(200, seed=5)
    s = new_store(server, kind="flat")
    reference = brute_force(Path("/nowhere"))
    with Engine(FakeEncoder(dim=DIM), s) as engine, Engine(FakeEncoder(dim=DIM), reference) as want:
        engine.add(corpus)
        want.add(corpus)
        texts = [q.text for q in corpus[::17]] + ["not stored at all"]
        assert [[(h.text, h.duplicate) for h in hits] for hits in engine.query(texts, k=4)] == \
            [[(h.text, h.duplicate) for h in hits] for hits in want.query(texts, k=4)]


# ---------------------------------------------------------------- the CLI


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


@pytest.fixture
def built(server, tiny_model, pairs_file):
    uri = server.uri(fresh_name())
    r = run("index", pairs_file, "--index", uri, "--model", tiny_model)
    assert r.exit_code == 0, r.output
    return uri


def test_cli_index_query_remove_info(built, pairs_file, tmp_path, monkeypatch):
    n = len(load_questions(pairs_file))
    r = run("query", "How old are you?", "--index", built, "-k", "1", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["hits"][0] == {"id": "1", "text": "How old are you?", "score": pytest.approx(1.0, abs=1e-4), "duplicate": True}
    r = run("index", pairs_file, "--index", built)  # a re-run adds nothing
    assert r.exit_code == 0 and f"updated {built}: 0 added, {n} already indexed, 0 empty skipped; {n} questions in all" in r.output
    f = tmp_path / "queries.csv"
    f.write_text("id,question\nq1,How old are you?\nq2,\nq3,Where are you from?\n")
    r = run("query", "--file", f, "--index", built, "-k", "2")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["id"], x["hits"][0]["text"]) for x in lines] == [("q1", "How old are you?"), ("q3", "Where are you from?")]
    r = run("query", "Where are you from?", "--index", built, "--ef-search", "200", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["hits"][0]["text"] == "Where are you from?"
    r = run("remove", "1", "2", "--index", built)
    assert (r.exit_code, r.output) == (0, f"removed 2 from {built}; {n - 2} questions left\n")
    r = run("remove", "1", "--index", built)
    assert (r.exit_code, r.output) == (1, f"Error: not in {built}: 1; nothing was removed\n")
    r = run("info", "--index", built, "--json")
    info = json.loads(r.stdout)
    assert (info["count"], info["kind"], info["dimension"], info["sources"]) == (n - 2, "hnsw", 16, {str(pairs_file): n - 2})
    monkeypatch.setenv("DUPFINDER_INDEX", built)  # the same URI from the environment
    r = run("info")
    assert r.exit_code == 0 and f"questions  {n - 2}" in r.output and "kind       hnsw (inner_product)" in r.output


def test_cli_flat_kind_and_dedup_against(server, tiny_model, tmp_path):
    uri = server.uri(fresh_name())
    indexed = tmp_path / "indexed.csv"
    indexed.write_text("id,question\nk1,How old are you?\nk2,What is the capital of France?\n,Why is the sky blue?\n")
    assert run("index", indexed, "--index", uri, "--model", tiny_model, "--kind", "flat").exit_code == 0
    r = run("query", "How old are you?", "--index", uri, "--ef-search", "64")
    assert r.exit_code == 2 and r.output.splitlines()[-1] == f"Error: --ef-search applies to HNSW indexes; {uri} is flat"
    r = run("index", "-", "--index", uri, "--kind", "hnsw", input="New?\n")
    assert (r.exit_code, r.output) == (1, f"Error: {uri} is a flat index; leave out --kind to append, or use another --index\n")
    src = tmp_path / "q.csv"
    src.write_text("id,question\nq1,how old are you?\nq2,Is this new?\nq3,why is the sky blue?\n")
    out = tmp_path / "out.csv"
    r = run("dedup", src, "-o", out, "--against", uri, "--threshold", "0.9999")
    assert r.exit_code == 0, r.output
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0][-2:] == ["index_match_id", "index_match_score"]
    by_id = {row[0]: row[-2:] for row in rows[1:]}
    assert by_id["q1"] == ["k1", "1.0000"] and by_id["q2"] == ["", ""]
    assert by_id["q3"][0].isdigit() and by_id["q3"][1] == "1.0000"  # no user id: the store's own


def test_cli_errors_are_one_line(server, built, tmp_path, monkeypatch):
    monkeypatch.setattr(milvus_module, "RETRY", FAST)
    port = milvus_server.free_port()
    for args in (("query", "How old are you?"), ("info",), ("remove", "3"), ("index", "-")):
        r = run(*args, "--index", f"milvus://127.0.0.1:{port}/q", input="A question?\n")
        assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
        assert r.output.startswith(f"Error: cannot reach the Milvus server at 127.0.0.1:{port} after 3 tries")
    missing = server.uri("nothing_here")
    r = run("query", "How old are you?", "--index", missing)
    assert (r.exit_code, r.output) == (1, f"Error: no collection nothing_here on the Milvus server at 127.0.0.1:{server.port}; "
                                          f"build it with: dupfinder index FILE --index {missing}\n")
    r = run("query", "How old are you?", "--index", "milvus://127.0.0.1:1/no-dashes")
    assert r.exit_code == 1 and r.output.startswith("Error: 'no-dashes' is not a Milvus collection name")
    with open_store(built) as s:  # another model's collection
        s.client.alter_collection_properties(s.address.collection, properties={
            "dupfinder.model": json.dumps({**s.model, "fingerprint": "0123456789abcdef"})})
    r = run("query", "How old are you?", "--index", built)
    assert r.exit_code == 1 and r.output.startswith(f"Error: {built} was built with model 0123456789abcdef") and r.output.count("\n") == 1


# ---------------------------------------------------------------- a server killed during `dupfinder index`


@pytest.fixture
def own_server(tmp_path):
    s = milvus_server.MilvusLiteServer(tmp_path / "own").start()
    yield s
    s.remove()


def many_questions(path: Path, n: int) -> Path:
    path.write_text("id,question\n" + "".join(f"u{i},question number {i} about topic {i % 17}?\n" for i in range(n)))
    return path


@pytest.mark.slow
def test_a_server_restarted_during_index_loses_and_duplicates_nothing(own_server, tiny_model, tmp_path, monkeypatch):
    """Killed with SIGKILL after the second batch; back 0.5 s later: the retries carry the add through."""
    monkeypatch.setattr(milvus_module, "BATCH_ROWS", 50)
    monkeypatch.setattr(milvus_module, "RETRY", Retry(attempts=40, first_s=0.2, cap_s=1.0, timeout_s=10))
    real, calls, restarts = MilvusStore._call, [], []

    def call(self, what, fn, *args, **kwargs):
        if what == "upsert":
            calls.append(1)
            if len(calls) == 3:
                own_server.kill9()
                restarts.append(threading.Timer(0.5, own_server.start))
                restarts[-1].start()
        return real(self, what, fn, *args, **kwargs)

    monkeypatch.setattr(MilvusStore, "_call", call)
    uri = own_server.uri("restarted")
    r = run("index", many_questions(tmp_path / "q.csv", 420), "--index", uri, "--model", tiny_model)
    restarts[0].join()
    assert r.exit_code == 0, r.output
    assert "420 added, 0 already indexed, 0 empty skipped; 420 questions in all" in r.output
    with open_store(uri) as s:
        stored = user_ids(s)
        assert len(stored) == len(set(stored)) == 420 and s.count == 420


@pytest.mark.slow
def test_an_index_that_fails_for_good_is_completed_by_a_rerun(own_server, tiny_model, tmp_path, monkeypatch):
    """Killed and not back within the retries: one line, exit 1; the re-run adds the rest, once."""
    monkeypatch.setattr(milvus_module, "BATCH_ROWS", 50)
    monkeypatch.setattr(milvus_module, "RETRY", FAST)
    real, calls = MilvusStore._call, []

    def call(self, what, fn, *args, **kwargs):
        if what == "upsert":
            calls.append(1)
            if len(calls) == 4:
                own_server.kill9()
        return real(self, what, fn, *args, **kwargs)

    monkeypatch.setattr(MilvusStore, "_call", call)
    uri = own_server.uri("failed")
    questions = many_questions(tmp_path / "q.csv", 420)
    r = run("index", questions, "--index", uri, "--model", tiny_model)
    error = r.output.splitlines(keepends=True)[-1]  # after the file's summary line
    assert r.exit_code == 1 and error.startswith(f"Error: cannot reach the Milvus server at 127.0.0.1:{own_server.port} after 3 tries")
    stored = re.search(r"; (\d+) of 420 new questions were stored before it: run the command again to add the rest "
                       r"\(none is added twice\)\n$", error)
    assert stored and int(stored[1]) == 150
    own_server.start()
    monkeypatch.setattr(MilvusStore, "_call", real)
    with open_store(uri) as s:
        assert s.count == int(stored[1])
    r = run("index", questions, "--index", uri)
    assert r.exit_code == 0, r.output
    assert f"{420 - int(stored[1])} added, {stored[1]} already indexed, 0 empty skipped; 420 questions in all" in r.output
    with open_store(uri) as s:
        stored = user_ids(s)
        assert len(stored) == len(set(stored)) == 420
