"""The numpy forward pass against torch, weights.npz in model directories, and a query process without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dupfinder.model.files import load_numpy_weights, read_model_dir, save_model
from dupfinder.model.encoder import NUMPY_MAX_BATCH, load_model
from dupfinder.errors import ModelError
from dupfinder.model.network import ModelConfig, SiameseEncoder
from dupfinder.text import TextConfig, Vocab

QUESTIONS = [
    "How old are you?",
    "",  # one UNK token
    "What is your age?",
    "   ",
    "How do I learn Python quickly if I already know C++ and a bit of Java, and which books help?",
    "zzzz qqqq",  # all unknown words
    "a",
    "Where are you from? Where are you going?",
]
WORDS = "how old are you what is your age do i learn python where from going ? a".split()


def random_model(directory, **config) -> None:
    """An untrained model of the given shape, written by save_model (fp16 weights, as shipped)."""
    torch.manual_seed(sum(map(ord, repr(sorted(config.items())))))
    vocab = Vocab(["<pad>", "<unk>", *WORDS])
    network = SiameseEncoder(ModelConfig(vocab_size=len(vocab), d_embed=12, d_model=10, **config))
    with torch.no_grad():
        for p in network.parameters():  # larger than the default init, so the gates saturate somewhere
            p.mul_(3)
    save_model(directory, network, vocab, TextConfig(), threshold=0.5)


SHAPES = [
    dict(bidirectional=False, pooling="mean"),
    dict(bidirectional=False, pooling="max"),
    dict(bidirectional=False, pooling="meanmax"),
    dict(bidirectional=True, pooling="mean"),
    dict(bidirectional=True, pooling="max"),
    dict(bidirectional=True, pooling="meanmax"),
    dict(bidirectional=True, pooling="meanmax", d_out=7),
    dict(bidirectional=False, pooling="last"),
    dict(bidirectional=True, pooling="last"),
    dict(bidirectional=True, pooling="maxlast"),
    dict(bidirectional=True, pooling="max", n_layers=2),
    dict(bidirectional=False, pooling="mean", n_layers=2, d_out=5),
]


@pytest.mark.parametrize("jit", [False, True], ids=["numpy", "numba"])
@pytest.mark.parametrize("config", SHAPES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_numpy_matches_torch(tmp_path, config, jit):
    random_model(tmp_path / "m", **config)
    np_enc, torch_enc = load_model(tmp_path / "m", backend="numpy", jit=jit), load_model(tmp_path / "m", backend="torch")
    assert np_enc._numpy.jit is jit
    want = torch_enc.encode(QUESTIONS)
    np.testing.assert_allclose(np_enc.encode(QUESTIONS), want, atol=1e-5)
    # one at a time (no padding at all) and in odd batches (padding between lengths)
    np.testing.assert_allclose(np.vstack([np_enc.encode([q]) for q in QUESTIONS]), want, atol=1e-5)
    np.testing.assert_allclose(np_enc.encode(QUESTIONS, batch_size=3), want, atol=1e-5)
    assert np_enc.encode([]).shape == (0, torch_enc.dim)


@pytest.mark.parametrize("jit", [False, True], ids=["numpy", "numba"])
def test_numpy_matches_torch_on_trained_tiny_model(tiny_model, jit):
    np_enc, torch_enc = load_model(tiny_model, backend="numpy", jit=jit), load_model(tiny_model, backend="torch")
    np.testing.assert_allclose(np_enc.encode(QUESTIONS), torch_enc.encode(QUESTIONS), atol=1e-5)


def test_shipped_model_numpy_and_torch_load_the_same_weights():
    files = read_model_dir(None)
    arrays = load_numpy_weights(files)
    state = load_model(backend="torch").network.state_dict()
    assert arrays.keys() == state.keys()
    for name, tensor in state.items():
        assert arrays[name].dtype == np.float16
        np.testing.assert_array_equal(arrays[name].astype(np.float32), tensor.numpy())
    np_enc, torch_enc = load_model(backend="numpy"), load_model(backend="torch")
    np.testing.assert_allclose(np_enc.encode(QUESTIONS), torch_enc.encode(QUESTIONS), atol=1e-5)


def test_format_1_directory_with_weights_pt_still_loads(tmp_path):
    """Models written before format 2 hold their weights twice; torch reads weights.pt, numpy weights.npz."""
    random_model(tmp_path / "m", bidirectional=True, pooling="max")
    state = {name: torch.from_numpy(a) for name, a in load_numpy_weights(read_model_dir(tmp_path / "m")).items()}
    torch.save(state, tmp_path / "m" / "weights.pt")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    (tmp_path / "m" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    np_enc, torch_enc = load_model(tmp_path / "m", backend="numpy"), load_model(tmp_path / "m", backend="torch")
    np.testing.assert_allclose(np_enc.encode(QUESTIONS), torch_enc.encode(QUESTIONS), atol=1e-5)
    (tmp_path / "m" / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="weights.pt is corrupt or does not match config.json"):
        load_model(tmp_path / "m", backend="torch").encode(QUESTIONS)  # the network loads on first use


def test_auto_backend_uses_numpy_for_few_questions_and_torch_for_many(tmp_path):
    random_model(tmp_path / "m", bidirectional=True, pooling="max")
    enc = load_model(tmp_path / "m")
    assert enc.uses_numpy(1) and enc.uses_numpy(NUMPY_MAX_BATCH) and not enc.uses_numpy(NUMPY_MAX_BATCH + 1)
    many = (QUESTIONS * 20)[: NUMPY_MAX_BATCH + 5]
    np.testing.assert_allclose(enc.encode(many)[: len(QUESTIONS)], enc.encode(QUESTIONS), atol=1e-5)


def test_model_without_numpy_weights_runs_in_torch(tmp_path):
    random_model(tmp_path / "m", bidirectional=True, pooling="mean")
    want = load_model(tmp_path / "m").encode(QUESTIONS)
    state = {name: torch.from_numpy(a) for name, a in load_numpy_weights(read_model_dir(tmp_path / "m")).items()}
    torch.save(state, tmp_path / "m" / "weights.pt")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    del manifest["numpy_weights"]  # format 1 as written before weights.npz existed: weights.pt only
    (tmp_path / "m" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    (tmp_path / "m" / "weights.npz").unlink()
    enc = load_model(tmp_path / "m")
    assert not enc.uses_numpy(1)
    np.testing.assert_allclose(enc.encode(QUESTIONS), want, atol=1e-5)
    with pytest.raises(ModelError, match="cannot run without torch"):
        load_model(tmp_path / "m", backend="numpy")


def test_stale_or_corrupt_numpy_weights_are_refused(tmp_path):
    random_model(tmp_path / "m", bidirectional=False, pooling="max")
    npz = tmp_path / "m" / "weights.npz"
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="weights.npz does not match .*manifest.json"):
        load_model(tmp_path / "m")


QUERY_WITHOUT_TORCH = """
import sys
from dupfinder.cli import cli
try:
    cli(["query", "How old are you?", "--index", sys.argv[1], "-k", "3", "--json"])
except SystemExit as e:
    assert not e.code, e.code
assert "torch" not in sys.modules, "torch was imported"
assert "numba" not in sys.modules, "numba was imported (a one-shot CLI process does not need it)"
"""


def test_query_process_does_not_import_torch(tmp_path, tiny_model):
    from dupfinder.engine import Engine
    from dupfinder.store.base import Question

    with Engine.for_writing(tmp_path / "ix", tiny_model) as engine:
        engine.add([Question(None, q) for q in QUESTIONS if q.strip()])
    r = subprocess.run([sys.executable, "-c", QUERY_WITHOUT_TORCH, str(tmp_path / "ix")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)["hits"]
    assert hits[0]["text"] == "How old are you?" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_kernel_exp_is_float32_accurate_over_the_clipped_range():
    from dupfinder.model.lstm_kernel import CLIP, exp_into

    x = np.linspace(-CLIP, CLIP, 100_001, dtype=np.float32)
    out, bits = np.empty_like(x), np.empty(len(x), dtype=np.int32)
    exp_into(x, out, bits)
    assert np.max(np.abs(out / np.exp(x.astype(np.float64)) - 1)) < 2e-7
