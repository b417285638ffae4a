"""Shared fixtures: tiny deterministic data and a tiny model trained in seconds on it."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolate_home(tmp_path, monkeypatch):
    """Point every place dupfinder writes at a temp dir, and keep tests on few threads."""
    monkeypatch.setenv("DUPFINDER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUPFINDER_INDEX", raising=False)
    monkeypatch.delenv("DUPFINDER_MODEL", raising=False)


@pytest.fixture(scope="session")
def pairs_file() -> Path:
    return DATA / "pairs.csv"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, pairs_file) -> Path:
    """A small unidirectional model trained for a few epochs on tests/data/pairs.csv (a few seconds)."""
    from dupfinder.train.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_model")
    config = TrainConfig(epochs=3, batch_size=8, neg_pairs=4, val_fraction=0.2, glove=False, min_freq=1,
                         warmup_steps=1, threads=1, checkpoint_every=2)
    config.model.d_embed, config.model.d_model = 16, 16
    train(pairs_file, out, config, log=lambda _: None)
    return out
