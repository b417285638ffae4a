"""The Siamese question encoder: Embedding -> LSTM -> pooling over real time steps -> L2 normalize.

One network encodes both sides of a pair (shared weights), so cosine similarity of two questions
is the inner product of their vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class ModelConfig:
    vocab_size: int = 30000  # set from the vocabulary at training time
    d_embed: int = 50  # GloVe 6B 50d when pretrained vectors are used
    d_model: int = 128  # LSTM hidden size per direction (the course uses 128)
    n_layers: int = 1  # stacked LSTM layers
    bidirectional: bool = False  # the course encoder is unidirectional
    pooling: str = "mean"  # "mean", "max" or "meanmax" over the unpadded time steps
    d_out: int = 0  # linear projection after pooling; 0 = none (vector is the pooled LSTM state)
    dropout: float = 0.0  # on embeddings and pooled vectors, training only

    @property
    def d_vector(self) -> int:
        if self.d_out:
            return self.d_out
        width = self.d_model * (2 if self.bidirectional else 1)
        return width * (2 if self.pooling == "meanmax" else 1)


POOLINGS = ("mean", "max", "meanmax")


class SiameseEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {config.pooling!r}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_embed, padding_idx=0)
        self.lstm = nn.LSTM(
            config.d_embed, config.d_model, num_layers=config.n_layers,
            bidirectional=config.bidirectional, batch_first=True,
        )
        width = config.d_model * (2 if config.bidirectional else 1) * (2 if config.pooling == "meanmax" else 1)
        self.proj = nn.Linear(width, config.d_out) if config.d_out else None
        self.drop = nn.Dropout(config.dropout)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) int64 padded with 0, lengths (B,) >= 1 -> unit vectors (B, D)."""
        x = self.drop(self.embed(ids))  # (B, T, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, T, H)
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        pooled = []
        if self.config.pooling in ("mean", "meanmax"):
            pooled.append((h * mask).sum(1) / lengths[:, None].to(h.dtype))  # (B, H)
        if self.config.pooling in ("max", "meanmax"):
            pooled.append(h.masked_fill(~mask, float("-inf")).amax(1))  # (B, H)
        v = self.drop(torch.cat(pooled, dim=-1))  # (B, H) or (B, 2H)
        if self.proj is not None:
            v = self.proj(v)  # (B, D)
        return F.normalize(v, dim=-1)
