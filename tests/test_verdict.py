"""The verdict stage: features symmetric in the two questions and blind to nothing unknown words
say, the pair head stored beside the encoder (fingerprint unchanged, numpy inference), the engine
and CLI using it everywhere, the cosine rule kept (--verdict cosine, models without a head), and
a broken head reported in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.engine import Engine, load_encoder
from dupfinder.errors import ModelError
from dupfinder.store.base import BruteForceStore, Question
from dupfinder.text import tokenize
from dupfinder.verdict import Verdict, is_duplicate
from dupfinder.verdict.features import N_TEXT, TEXT_FEATURES, vector_features

QUESTIONS = ["How do I learn python?", "What is the best way to learn python?", "How do I install Zorblax?",
             "How do I install Quibbit?", "Where can I buy a cheap laptop?", "What is the capital of France?"]


def test_the_rule_is_importable_from_the_package():
    assert is_duplicate(0.6, 0.5) is True and is_duplicate(0.4, 0.5) is False
    assert Verdict.of(0.5).kind == "cosine" and Verdict.of(0.5, 0.7).source == "option"


@pytest.fixture(scope="module")
def featurizer(tiny_model):
    from dupfinder.train.head import featurizer_for

    enc = load_encoder(tiny_model)
    return featurizer_for(enc, [tokenize(q) for q in QUESTIONS * 3])


def test_text_features_are_symmetric_and_keep_unknown_words_apart(featurizer):
    qs = featurizer.questions(QUESTIONS + ["How do I install Zorblax?"])
    for a in qs:
        for b in qs:
            assert np.allclose(featurizer.pair(a, b), featurizer.pair(b, a))
    f = dict(zip(TEXT_FEATURES, featurizer.pair(qs[2], qs[3])))  # Zorblax / Quibbit: both unknown, different
    assert f["unknown_unmatched"] == 2 and f["jaccard"] < 1
    same = dict(zip(TEXT_FEATURES, featurizer.pair(qs[2], qs[6])))
    assert same["unknown_unmatched"] == 0 and same["unknown_shared"] >= 1 and same["jaccard"] == 1
    assert featurizer.pairs(qs[:2], qs[2:4]).shape == (2, N_TEXT)


def test_batched_text_features_match_one_pair_at_a_time(featurizer):
    texts = QUESTIONS + ["", "?", "cats cat cats", "How do I install Zorblax?"]
    qs = featurizer.questions(texts)
    a = [x for x in qs for _ in qs]
    b = [y for _ in qs for y in qs]
    want = np.stack([featurizer.pair(x, y) for x, y in zip(a, b)])
    assert np.allclose(featurizer.pairs(a, b, chunk=7), want, atol=1e-5)


def test_compiled_text_features_match_numpy(tiny_model):
    from dupfinder.train.head import featurizer_for

    texts = QUESTIONS + ["", "?", "cats cat cats", "How do I install Zorblax?", "Zorblax Quibbit zorblax?!"]
    plain = featurizer_for(load_encoder(tiny_model), [tokenize(q) for q in QUESTIONS * 3])
    qs = plain.questions(texts)
    a = [x for x in qs for _ in qs]  # every ordered pair, empty and punctuation-only questions too
    b = [y for _ in qs for y in qs]
    want = plain.pairs(a, b, chunk=7)
    assert plain.compile()
    got = plain.pairs(a, b, chunk=7)
    assert got.dtype == np.float32 and np.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.array_equal(got[:, [0, 4, 5, 6, 10, 11, 12]], want[:, [0, 4, 5, 6, 10, 11, 12]])  # counts: exact
    assert (got[len(qs) * 6 : len(qs) * 7] == 0).all()  # the empty question: no features, as in numpy


def test_vector_features_are_symmetric():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    assert np.allclose(vector_features(u, v), vector_features(v, u))
    assert vector_features(u, v).shape == (5, 17)


def add_random_head(model_dir, threshold=0.5, seed=0):
    """A head with random weights written as train-verdict writes one (fast; what it decides is not the point)."""
    from dupfinder.train.head import featurizer_for, save_head
    from dupfinder.verdict.head import head_arrays

    enc = load_encoder(model_dir)
    feat = featurizer_for(enc, [tokenize(q) for q in QUESTIONS])
    rng = np.random.default_rng(seed)
    n_in = 2 * enc.dim + 1 + N_TEXT
    weights = {"w1": rng.normal(size=(n_in, 8)) * 0.3, "b1": np.zeros(8), "w2": rng.normal(size=(8, 4)) * 0.3, "b2": np.zeros(4),
               "w3": rng.normal(size=(4, 1)), "b3": np.zeros(1)}
    return save_head(model_dir, head_arrays(weights, np.zeros(n_in), np.ones(n_in), feat.idf, feat.idf_unknown), threshold,
                     {"cosine_floor": -1.0})


@pytest.fixture
def head_model(tiny_model, tmp_path):
    model = tmp_path / "with_head"
    shutil.copytree(tiny_model, model)
    add_random_head(model)
    return model


def test_a_head_is_stored_beside_the_encoder_without_changing_its_fingerprint(tiny_model, head_model):
    before, after = load_encoder(tiny_model), load_encoder(head_model)
    assert after.fingerprint == before.fingerprint
    manifest = json.loads((head_model / "manifest.json").read_text())
    assert manifest["verdict"]["file"] == "verdict.npz" and len(manifest["verdict"]["sha256"]) == 64
    engine = Engine(after)
    assert engine.verdict.kind == "head" and engine.verdict.note is None
    assert Engine(after, verdict="cosine").verdict.kind == "cosine"


def test_the_engine_decides_every_pair_with_the_head(head_model):
    engine = Engine(load_encoder(head_model))
    one = engine.similarity(QUESTIONS[0], QUESTIONS[1])
    assert set(one) == {"score", "threshold", "duplicate", "cosine", "verdict"} and one["verdict"] == "head"
    assert 0.0 < one["score"] < 1.0 and one["duplicate"] == (one["score"] >= engine.threshold)
    swapped = engine.similarity(QUESTIONS[1], QUESTIONS[0])
    assert swapped["score"] == pytest.approx(one["score"], abs=1e-6)  # symmetric in the two questions
    many = list(engine.similarities([(QUESTIONS[0], QUESTIONS[1]), (QUESTIONS[2], QUESTIONS[3])], chunk=1))
    assert many[0]["score"] == pytest.approx(one["score"], abs=1e-5)
    cosine = Engine(load_encoder(head_model), verdict="cosine").similarity(QUESTIONS[0], QUESTIONS[1])
    assert cosine["score"] == pytest.approx(one["cosine"], abs=1e-6) and cosine["verdict"] == "cosine"


def test_query_marks_duplicates_by_the_head_over_stored_vectors(head_model):
    enc = load_encoder(head_model)
    store = BruteForceStore(enc.dim)
    engine = Engine(enc, store)
    engine.add([Question(f"q{i}", t) for i, t in enumerate(QUESTIONS)])
    hits = engine.query([QUESTIONS[0], "How do I install Zorblax?"], k=3)
    for text, row in zip([QUESTIONS[0], "How do I install Zorblax?"], hits):
        assert len(row) == 3 and [h.score for h in row] == sorted((h.score for h in row), reverse=True)
        for h in row:
            want = engine.similarity(text, h.text)
            assert h.verdict_score == pytest.approx(want["score"], abs=1e-5)
            assert h.duplicate == want["duplicate"]


def test_stores_hand_out_their_vectors(tmp_path, tiny_model):
    from fake_encoder import FakeEncoder, open_local

    enc = FakeEncoder(dim=16)
    for store in (BruteForceStore(16), open_local(tmp_path / "ix", enc)):
        store.add([Question(f"u{i}", t) for i, t in enumerate(QUESTIONS)], enc.encode(QUESTIONS))
        _, ids = store.search(enc.encode(QUESTIONS[::-1]), 1)
        got = store.get_vectors(ids[:, 0].tolist())
        assert np.allclose(got, enc.encode(QUESTIONS[::-1]), atol=1e-6)
        with pytest.raises(KeyError):
            store.get_vectors([10_000])


def test_dedup_with_the_head_keeps_every_pair_of_a_cluster_duplicates(head_model):
    engine = Engine(load_encoder(head_model))
    texts = QUESTIONS * 2 + ["How can I learn python?", "how do i learn python"]
    result, _ = engine.dedup(texts, np.ones(len(texts), bool))
    assert (result.cluster >= 0).all()
    for i, j in zip(*np.triu_indices(len(texts), 1)):
        if result.cluster[i] == result.cluster[j] and texts[i].lower() != texts[j].lower():
            assert engine.similarity(texts[i], texts[j])["duplicate"]
    # the guard asks only the canonical
    result, _ = engine.dedup(texts, np.ones(len(texts), bool), linkage="guard")
    for i, c in enumerate(result.canonical.tolist()):
        if c != i and texts[c].lower() != texts[i].lower():
            assert engine.similarity(texts[i], texts[c])["duplicate"]


def test_evaluate_and_calibrate_use_the_head(head_model, pairs_file, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", str(pairs_file), "--model", str(head_model), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.splitlines()[-1])
    assert out["verdict"] == "head" and out["threshold"] == pytest.approx(0.5)
    res = runner.invoke(cli, ["evaluate", str(pairs_file), "--model", str(head_model), "--json", "--verdict", "cosine"])
    assert json.loads(res.output.splitlines()[-1])["verdict"] == "cosine"
    res = runner.invoke(cli, ["calibrate", str(pairs_file), "--model", str(head_model), "--write", "accuracy", "--json"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((head_model / "manifest.json").read_text())
    written = json.loads(res.output.splitlines()[-1])["written"]
    assert written["verdict"] == "head" and manifest["verdict"]["threshold"] == pytest.approx(written["threshold"])


def test_similarity_file_prints_score_and_duplicate(head_model, tmp_path):
    pairs = tmp_path / "p.csv"
    pairs.write_text("question1,question2\nHow do I install Zorblax?,How do I install Quibbit?\nHow old are you?,What is your age?\n")
    res = CliRunner().invoke(cli, ["similarity", "--file", str(pairs), "--model", str(head_model)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.splitlines() if x.startswith("{")]
    assert len(lines) == 2 and all({"score", "duplicate", "cosine", "verdict"} <= set(x) for x in lines)


def test_a_model_without_a_head_uses_the_cosine_rule_with_a_note(tiny_model):
    runner = CliRunner()
    res = runner.invoke(cli, ["similarity", "How old are you?", "What is your age?", "--model", str(tiny_model)])
    assert res.exit_code == 0
    assert "has no verdict stage: duplicates are decided by the cosine rule" in res.output
    res = runner.invoke(cli, ["similarity", "a b", "c d", "--model", str(tiny_model), "--verdict", "head"])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "--verdict cosine" in res.output


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_a_broken_head_is_a_one_line_error_naming_the_file(head_model, damage):
    path = head_model / "verdict.npz"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(b"not a zip file at all")
    res = CliRunner().invoke(cli, ["similarity", "How old are you?", "What is your age?", "--model", str(head_model)])
    assert res.exit_code == 1
    assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1 and str(path) in res.output
    with pytest.raises(ModelError):
        Engine(load_encoder(head_model))
    assert Engine(load_encoder(head_model), verdict="cosine").verdict.kind == "cosine"  # the cosine rule still reads it


def test_dedup_against_a_store_keeps_only_matches_the_head_calls_duplicates(head_model):
    enc = load_encoder(head_model)
    engine = Engine(enc, BruteForceStore(enc.dim))
    engine.add([Question(f"q{i}", t) for i, t in enumerate(QUESTIONS)])
    texts = ["How do I learn python?", "How do I install Quibbit?", "What is the capital of Spain?"]
    result, labels = engine.dedup(texts, np.ones(len(texts), bool), against=True)
    stored = {r.id: r.text for r in engine.store.records.values()}
    for text, match in zip(texts, result.match.tolist()):
        if match >= 0:
            assert engine.similarity(text, stored[match])["duplicate"]


def test_features_stay_numpy_where_the_kernel_cannot_load(tiny_model, monkeypatch):
    import sys

    from dupfinder.train.head import featurizer_for

    plain = featurizer_for(load_encoder(tiny_model), [tokenize(q) for q in QUESTIONS * 3])
    monkeypatch.setitem(sys.modules, "dupfinder.verdict.features_kernel", None)  # numba missing: the import fails
    assert plain.compile() is False and plain._kernel is None
    qs = plain.questions(QUESTIONS)
    assert plain.pairs(qs[:3], qs[3:]).shape == (3, N_TEXT)
