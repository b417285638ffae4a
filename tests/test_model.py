import pytest
import torch

from dupfinder.model.encoder import pad_batch
from dupfinder.model.network import ModelConfig, SiameseEncoder

import numpy as np


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["mean", "max", "meanmax"])
def test_padding_does_not_change_a_vector(bidirectional, pooling):
    torch.manual_seed(0)
    net = SiameseEncoder(ModelConfig(vocab_size=50, d_embed=8, d_model=6, bidirectional=bidirectional, pooling=pooling)).eval()
    short = np.array([5, 6, 7])
    alone = net(*pad_batch([short]))  # (1, D)
    padded = net(*pad_batch([short, np.arange(2, 20)]))[0:1]  # padded to length 18 in a batch
    torch.testing.assert_close(alone, padded, atol=1e-6, rtol=1e-5)
    assert alone.shape == (1, net.config.d_vector)
    torch.testing.assert_close(alone.norm(dim=-1), torch.ones(1))


def test_course_architecture_shape_and_projection():
    net = SiameseEncoder(ModelConfig(vocab_size=10))  # one LSTM layer, d_model 128, mean pooling
    assert net.config.d_vector == 128 and not net.config.bidirectional and net.config.pooling == "mean"
    proj = SiameseEncoder(ModelConfig(vocab_size=10, bidirectional=True, pooling="meanmax", d_out=64))
    v = proj(*pad_batch([np.array([2, 3]), np.array([4])]))
    assert v.shape == (2, 64)


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling"):
        SiameseEncoder(ModelConfig(vocab_size=10, pooling="median"))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("pooling", ["mean", "max", "meanmax", "last", "maxlast"])
def test_chunked_padded_lstm_equals_packed_lstm(bidirectional, n_layers, pooling):
    """The fast path (length-sorted chunks, reverse direction flipped within each row) is nn.LSTM exactly."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(1)
    config = ModelConfig(vocab_size=60, d_embed=8, d_model=6, n_layers=n_layers, bidirectional=bidirectional, pooling=pooling)
    net = SiameseEncoder(config).eval()
    rng = np.random.default_rng(0)
    ids, lengths = pad_batch([rng.integers(2, 60, size=rng.integers(1, 13)) for _ in range(41)])

    packed = pack_padded_sequence(net.embed(ids), lengths, batch_first=True, enforce_sorted=False)
    out, (h_n, _) = net.lstm(packed)
    h, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, T, H)
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
    parts = []
    if pooling in ("mean", "meanmax"):
        parts.append((h * mask).sum(1) / lengths[:, None])
    if pooling in ("max", "meanmax", "maxlast"):
        parts.append(h.masked_fill(~mask, float("-inf")).amax(1))
    if pooling in ("last", "maxlast"):  # nn.LSTM's own final states of the top layer, each direction
        parts.append(torch.cat(list(h_n[-(2 if bidirectional else 1):]), -1))
    expected = torch.nn.functional.normalize(torch.cat(parts, -1), dim=-1)

    for chunk in (1, 7, 128):
        torch.testing.assert_close(net(ids, lengths, chunk=chunk), expected, atol=1e-6, rtol=1e-5)
