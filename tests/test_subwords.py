"""Unknown words read through a subword table: distinct words get distinct vectors, known words keep
theirs, numpy and torch agree, the fingerprint covers the table, a damaged table is a one-line error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.errors import ModelError
from dupfinder.model.encoder import load_model
from dupfinder.model.files import DEFAULT_MODEL_DIR, read_model_dir
from dupfinder.model.subwords import add_subwords, bucket_rows, char_ngrams

UNKNOWN = ["How do I install Zorblax?", "How do I install Quibbit?", "How do I install Zorblaxx?"]


@pytest.fixture(scope="module")
def with_subwords(tiny_model, tmp_path_factory):
    """The tiny model with a small table fitted to its word vectors."""
    out = tmp_path_factory.mktemp("subwords") / "model"
    shutil.copytree(tiny_model, out)
    add_subwords(out, buckets=512, epochs=5, log=lambda _: None)
    return out


def test_char_ngrams_are_fasttexts():
    assert char_ngrams("ab", 3, 5) == ["<ab", "ab>", "<ab>"]
    assert char_ngrams("", 3, 5) == ["<>"]
    rows = bucket_rows("zorblax", 1000, 3, 5)
    assert rows.tolist() == bucket_rows("zorblax", 1000, 3, 5).tolist()  # a stable hash, not Python's salted one
    assert len(rows) == len(char_ngrams("zorblax", 3, 5)) and (rows < 1000).all()


def test_without_a_table_unknown_words_are_one_vector(tiny_model):
    enc = load_model(tiny_model)
    v = enc.encode(UNKNOWN[:2])
    assert enc.subwords is None and float(v[0] @ v[1]) > 0.9999


def test_with_a_table_two_unknown_words_differ(with_subwords):
    enc = load_model(with_subwords)
    v = enc.encode(UNKNOWN)
    assert np.abs(v[0] - v[1]).max() > 1e-3 and np.abs(v[0] - v[2]).max() > 1e-3  # without the table: identical


def test_known_words_encode_as_without_the_table(tiny_model, with_subwords):
    words = read_model_dir(tiny_model).vocab.itos[2:]
    known = [" ".join(words[:8]), " ".join(words[8:20])]
    assert np.allclose(load_model(tiny_model).encode(known), load_model(with_subwords).encode(known), atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 200])
def test_numpy_and_torch_agree_on_unknown_words(with_subwords, n):
    texts = (UNKNOWN * 100)[:n]
    a = load_model(with_subwords, backend="numpy").encode(texts)
    b = load_model(with_subwords, backend="torch").encode(texts)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # one question alone encodes as it does in a batch
    np.testing.assert_allclose(load_model(with_subwords).encode(texts[:1])[0], a[0], atol=1e-5)


def test_the_fingerprint_covers_the_table(tiny_model, with_subwords):
    before, after = read_model_dir(tiny_model).manifest, read_model_dir(with_subwords).manifest
    assert after["fingerprint"] != before["fingerprint"]
    assert after["subwords"]["encoder_fingerprint"] == before["fingerprint"]
    assert -1 <= after["subwords"]["median_cosine"] <= 1 and after["subwords"]["held_out_words"] > 0


def test_refitting_replaces_the_table_and_keeps_the_encoder_fingerprint(with_subwords, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(with_subwords, model)
    first = read_model_dir(model).manifest
    entry = add_subwords(model, buckets=256, epochs=2, seed=1, log=lambda _: None)
    m = read_model_dir(model).manifest
    assert entry["encoder_fingerprint"] == first["subwords"]["encoder_fingerprint"]
    assert m["fingerprint"] != first["fingerprint"]
    assert [p.name for p in model.glob("subwords-*.npz")] == [entry["file"]]  # the old table is gone
    load_model(model).encode(UNKNOWN)


@pytest.mark.parametrize("damage", ["missing", "truncated", "other"])
def test_a_damaged_table_is_a_one_line_error_naming_it(with_subwords, tmp_path, damage):
    model = tmp_path / "m"
    shutil.copytree(with_subwords, model)
    table = model / read_model_dir(model).manifest["subwords"]["file"]
    if damage == "missing":
        table.unlink()
    elif damage == "truncated":
        table.write_bytes(table.read_bytes()[:100])
    else:
        manifest = json.loads((model / "manifest.json").read_text())
        manifest["subwords"]["sha256"] = "0" * 64
        (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=table.name) as e:
        load_model(model)
    assert "\n" not in str(e.value)
    result = CliRunner().invoke(cli, ["similarity", "a", "b", "--model", str(model)])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and table.name in result.output


def test_train_subwords_command(tiny_model, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    result = CliRunner().invoke(cli, ["train-subwords", str(model), "--buckets", "300", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "added subwords-" in result.output
    assert read_model_dir(model).manifest["subwords"]["buckets"] == 300
    bad = CliRunner().invoke(cli, ["train-subwords", str(tmp_path / "nowhere")])
    assert bad.exit_code == 1 and bad.output.startswith("Error: ") and bad.output.count("\n") == 1


def test_the_shipped_model_tells_unknown_words_apart():
    enc = load_model()
    assert enc.subwords is not None
    v = enc.encode(UNKNOWN)
    assert float(v[0] @ v[1]) < 0.9  # "Zorblax" and "Quibbit" were one <unk> (cosine 1.0)
    assert float(v[0] @ v[2]) > float(v[0] @ v[1])  # a misspelling stays closer than another word
    record = read_model_dir(DEFAULT_MODEL_DIR).manifest["subwords"]
    assert record["buckets"] == 65536
    assert record["median_cosine"] > record["unk_median_cosine"] + 0.2  # spelling predicts a word's vector better than <unk>
