"""The current code against answers of the release before the restructuring (tests/data/release_fixture.json,
written with that release's code by tests/data/make_release_fixture.py): the shipped model's vectors of
20 fixed questions, and the top-5 hits of 6 queries over an index of 200 fixed questions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dupfinder.engine import Engine, model_record
from dupfinder.store import open_store
from dupfinder.store.base import Question

FIXTURE = json.loads((Path(__file__).parent / "data" / "release_fixture.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def shipped():
    from dupfinder.model.encoder import load_model

    encoder = load_model(jit=False)  # as the CLI runs it (numba's kernel is held to it in test_npencode.py)
    return without_subwords(encoder)


def without_subwords(encoder):
    """The shipped encoder as the release ran it: unknown words as <unk>, not by the subword table
    added since (held to the release below, on the questions it does not change)."""
    fingerprint = encoder.manifest.get("subwords", {}).get("encoder_fingerprint", encoder.fingerprint)
    if fingerprint != FIXTURE["model_fingerprint"]:
        pytest.fail(f"the shipped encoder is {fingerprint}, the fixture's {FIXTURE['model_fingerprint']}: a new model "
                    "changes every answer; write the fixture again from the release that ships it (see tests/data/make_release_fixture.py)")
    encoder.subwords = None
    return encoder


def test_the_shipped_model_gives_the_release_vectors(shipped):
    want = np.asarray(FIXTURE["vectors"], dtype=np.float32)  # (20, d)
    got = Engine(shipped).encode(FIXTURE["questions"])  # a few questions: the numpy path, as the release ran
    assert got.shape == want.shape == (20, FIXTURE["dimension"])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    for i, text in enumerate(FIXTURE["questions"][:3]):  # one at a time, as a query is encoded
        np.testing.assert_allclose(shipped.encode([text])[0], want[i], atol=1e-5, rtol=0)


def test_the_shipped_model_gives_the_release_vectors_in_torch():
    pytest.importorskip("torch")
    from dupfinder.model.encoder import load_model

    encoder = without_subwords(load_model(backend="torch"))
    np.testing.assert_allclose(encoder.encode(FIXTURE["questions"]), np.asarray(FIXTURE["vectors"], np.float32), atol=1e-5, rtol=0)


def test_the_subword_table_changes_only_questions_with_unknown_words():
    from dupfinder.model.encoder import load_model
    from dupfinder.text import tokenize

    encoder = load_model(jit=False)
    assert encoder.subwords is not None
    got = encoder.encode(FIXTURE["questions"])
    want = np.asarray(FIXTURE["vectors"], np.float32)
    unknown = np.array([any(w not in encoder.vocab.stoi for w in tokenize(q, encoder.text_config)) for q in FIXTURE["questions"]])
    assert 0 < unknown.sum() < len(unknown)
    np.testing.assert_allclose(got[~unknown], want[~unknown], atol=1e-5, rtol=0)
    assert (np.abs(got[unknown] - want[unknown]).max(axis=1) > 1e-3).all()


def test_an_index_of_the_release_corpus_gives_the_release_hits(shipped, tmp_path):
    store = open_store(str(tmp_path / "ix"), create={"kind": None})
    store.set_model(model_record(shipped), shipped.dim)  # as Engine.for_writing does, with the encoder the CLI runs
    with Engine(shipped, store) as engine:
        report = engine.add([Question(row["id"], row["question"], "corpus") for row in FIXTURE["corpus"]])
        assert report.added == len(FIXTURE["corpus"]) == 200
        results = engine.query([q["query"] for q in FIXTURE["queries"]], k=FIXTURE["k"])
    for want, hits in zip(FIXTURE["queries"], results):
        assert [h.id for h in hits] == [h["id"] for h in want["hits"]], want["query"]
        np.testing.assert_allclose([h.score for h in hits], [h["score"] for h in want["hits"]], atol=1e-5, rtol=0)
