import json

import numpy as np
import pytest
import torch

from dupfinder import load_model
from dupfinder.artifacts import load_model_dir
from dupfinder.text import Vocab
from dupfinder.train import TrainConfig, TrainingInterrupted, WordSwapper, train


def tiny_config(**kw) -> TrainConfig:
    config = TrainConfig(epochs=2, batch_size=6, neg_pairs=3, val_fraction=0.2, glove=False, min_freq=1,
                         warmup_steps=1, threads=1, checkpoint_every=1000, **kw)
    config.model.d_embed, config.model.d_model = 8, 8
    return config


class StopAfter:
    """A progress bar that presses Ctrl-C after `n` batches."""

    def __init__(self, n):
        self.n = n

    def __call__(self, total, label):
        return self

    def update(self, k=1, **fields):
        self.n -= k if fields else 0
        if fields and self.n <= 0:
            raise KeyboardInterrupt

    def close(self):
        pass


@pytest.mark.parametrize("extra", [{}, {"sub_negs": 3}, {"nce_weight": 1.0, "nce_hard": True}])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, pairs_file, extra):
    straight = tmp_path / "straight"
    train(pairs_file, straight, tiny_config(**extra), log=lambda _: None)

    resumed = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(pairs_file, resumed, tiny_config(**extra), log=lambda _: None, progress_factory=StopAfter(2))
    assert (resumed / "checkpoint.pt").exists() and not (resumed / "manifest.json").exists()
    train(pairs_file, resumed, None, resume=True, log=lambda _: None)

    a, b = load_model_dir(straight), load_model_dir(resumed)
    for (name, x), (_, y) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)
    assert a.threshold == pytest.approx(b.threshold)


def test_model_directory_contents_and_round_trip(tiny_model):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert {"torch", "numpy", "dupfinder", "python"} <= set(manifest["versions"])
    assert len(manifest["fingerprint"]) == 16
    assert -1 <= manifest["threshold"] <= 1
    assert manifest["calibration"]["threshold_at_precision"] is None or -1 <= manifest["calibration"]["threshold_at_precision"] <= 1.01
    assert manifest["training"]["config"]["margin"] == 0.25
    questions = ["How old are you?", "What is your age?", "Where are you from?"]
    first = load_model(tiny_model).encode(questions)
    again = load_model(tiny_model).encode(questions)
    np.testing.assert_array_equal(first, again)
    # batch size and order do not change a vector
    one_by_one = np.vstack([load_model(tiny_model).encode([q], batch_size=1) for q in questions])
    np.testing.assert_allclose(first, one_by_one, atol=1e-6)


def test_training_reduces_the_loss_on_tiny_data(tmp_path, pairs_file):
    config = tiny_config()
    config.epochs = 30
    manifest = train(pairs_file, tmp_path / "m", config, log=lambda _: None)
    history = manifest["training"]["history"]
    assert len(history) == 30
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]


def test_word_swapper_changes_exactly_one_word_and_skips_questions_without_words():
    vocab = Vocab(["<pad>", "<unk>", "?", "where", "are", "you", "from", "going", "'s", "what"])
    swap = WordSwapper(vocab)
    questions = [vocab.encode(q.split()) for q in ("where are you from ?", "? ?", "what 's you ?")]
    rng = np.random.default_rng(0)
    for _ in range(50):
        used, altered = swap(questions, rng)
        assert used == [0, 2]
        for i, new in zip(used, altered):
            changed = np.flatnonzero(new != questions[i])
            assert len(changed) == 1
            # only words are replaced, and only by words: never punctuation, clitics, <pad> or <unk>
            assert vocab.itos[questions[i][changed[0]]].isalpha() and vocab.itos[new[changed[0]]].isalpha()
    assert swap(questions, np.random.default_rng(7))[1][0].tolist() == swap(questions, np.random.default_rng(7))[1][0].tolist()
