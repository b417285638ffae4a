"""The Siamese question encoder: Embedding -> LSTM -> pooling over real time steps -> L2 normalize.

One network encodes both sides of a pair (shared weights), so cosine similarity of two questions
is the inner product of their vectors.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from dupfinder.model.config import ModelConfig
from dupfinder.model.fast import POOLINGS, pooled_width


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
        width = pooled_width(asdict(config))
        self.proj = nn.Linear(width, config.d_out) if config.d_out else None
        self.drop = nn.Dropout(config.dropout)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, chunk: int = 128, table: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) int64 padded with 0, lengths (B,) >= 1 -> unit vectors (B, D). `table`: input
        vectors to read ids from instead of the embedding's (its rows and more: words outside the vocabulary).

        Rows are sorted by length and run through the LSTM in chunks of `chunk` rows, each padded
        only to its own longest question. A row's vector depends on its own tokens only: the forward
        direction never reads past a row's end, and the backward direction reads each row reversed
        within its length, so padding is never an input of a real time step.
        """
        order = torch.argsort(lengths, stable=True)
        parts = []
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            n = lengths[rows]
            parts.append(self._pool(ids[rows, : int(n.max())], n, table))  # (b, H)
        pooled = torch.cat(parts)[torch.argsort(order)]  # back to input order, (B, H)
        v = self.drop(pooled)
        if self.proj is not None:
            v = self.proj(v)  # (B, D)
        return F.normalize(v, dim=-1)

    def _pool(self, ids: torch.Tensor, lengths: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """LSTM states over the real steps of ids (b, t), pooled over time -> (b, H)."""
        x = self.embed(ids) if table is None else F.embedding(ids, table, padding_idx=0)  # (b, t, E)
        h = self._lstm(self.drop(x), lengths)  # (b, t, H)
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (b, t, 1)
        pooled = []
        if self.config.pooling in ("mean", "meanmax"):
            pooled.append((h * mask).sum(1) / lengths[:, None].to(h.dtype))  # (b, H)
        if self.config.pooling in ("max", "meanmax", "maxlast"):
            pooled.append(h.masked_fill(~mask, float("-inf")).amax(1))  # (b, H)
        if self.config.pooling in ("last", "maxlast"):
            last = h[torch.arange(len(lengths), device=h.device), lengths - 1]  # (b, H): the states at each row's last token
            if self.config.bidirectional:  # the backward direction ends at the first token
                last = torch.cat([last[:, : self.config.d_model], h[:, 0, self.config.d_model :]], dim=-1)
            pooled.append(last)
        return torch.cat(pooled, dim=-1)

    def _lstm(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The (bi)LSTM on right-padded x (b, t, E) -> (b, t, H); outputs past a row's length are junk.

        Same weights and results as nn.LSTM on a packed sequence, but padded input runs faster on CPU.
        The reverse direction runs forward over each row flipped within its length.
        """
        b, t = x.shape[:2]
        steps = torch.arange(t, device=x.device)[None, :]  # (1, t)
        flip = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (b, t), its own inverse
        for layer in range(self.config.n_layers):
            outs = [self._direction(x, f"l{layer}")]
            if self.config.bidirectional:
                x_rev = x.gather(1, flip[..., None].expand_as(x))
                h_rev = self._direction(x_rev, f"l{layer}_reverse")
                outs.append(h_rev.gather(1, flip[..., None].expand_as(h_rev)))
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        return x

    def _direction(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        """One LSTM direction of one layer, left to right over x (b, t, in) -> (b, t, d_model)."""
        lstm = self.lstm
        weights = [getattr(lstm, f"{name}_{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h0 = x.new_zeros(1, x.shape[0], self.config.d_model)
        out, _, _ = torch.lstm(x, (h0, h0), weights, True, 1, 0.0, self.training, False, True)
        return out
