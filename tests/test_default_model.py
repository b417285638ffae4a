"""The model shipped in the package: present, small, loadable with no path, and sensible."""

import json

import numpy as np
import pytest

import dupfinder
from dupfinder.model.files import DEFAULT_MODEL_DIR


def test_shipped_model_is_small_and_fp16():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert size <= 40 * 10**6  # the model directory's budget, every stage included
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    for name in ("weights.npz", "verifier.npz", manifest["subwords"]["file"]):
        with np.load(DEFAULT_MODEL_DIR / name) as weights:
            assert all(weights[k].dtype == np.float16 for k in weights.files if k not in ("format", "ngrams"))
    assert manifest["threshold"] == manifest["calibration"]["threshold"]
    assert manifest["training"]["file"].endswith("train.csv.gz")


def test_load_model_without_a_path_gives_the_shipped_model():
    enc = dupfinder.load_model()
    assert enc.path == DEFAULT_MODEL_DIR and 0 < enc.threshold < 1
    v = enc.encode(["How do I learn Python quickly?", "What is the fastest way to learn Python?", "How do I learn Java quickly?"])
    assert v.shape == (3, enc.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    # a paraphrase is a duplicate at tau; the same question about another language is not
    assert v[0] @ v[1] > enc.threshold > v[0] @ v[2]


@pytest.mark.parametrize("a,b", [("What is the capital of France?", "What is the capital of Germany?")])
def test_a_changed_entity_is_not_a_duplicate(a, b):
    enc = dupfinder.load_model()
    assert enc.similarity(a, b) < enc.threshold


def test_a_reworded_short_question_is_a_duplicate():
    """The first named example: different words, same question."""
    enc = dupfinder.load_model()
    assert enc.similarity("How old are you?", "What is your age?") > enc.threshold


def test_the_shipped_stage_has_the_rewording_rule():
    """Rates measured on the training file; a rewording is a duplicate, a changed entity stays not."""
    from dupfinder.engine import Engine, load_encoder

    rates = load_encoder().manifest["verdict"]["rewording"]["rates"]
    assert 0.5 < rates["reorder"] < rates["same"] < 1
    engine = Engine(load_encoder())
    assert engine.verdict.head.__class__.__name__ == "Rewordings"
    reworded = engine.similarity("Could u recommend a laptop for programming?", "Can you recommend a laptop for programming?")
    assert reworded["duplicate"] and reworded["score"] >= rates["same"]
    assert not engine.similarity("What is the capital of France?", "What is the capital of Germany?")["duplicate"]
