"""The encoder's architecture settings, saved with every model as config.json; no torch here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dupfinder.model.fast import vector_dim


@dataclass
class ModelConfig:
    vocab_size: int = 30000  # set from the vocabulary at training time
    d_embed: int = 50  # GloVe 6B 50d when pretrained vectors are used
    d_model: int = 128  # LSTM hidden size per direction (the course uses 128)
    n_layers: int = 1  # stacked LSTM layers
    bidirectional: bool = False  # the course encoder is unidirectional
    pooling: str = "mean"  # "mean", "max", "meanmax" over the unpadded time steps; "last": each direction's
    # final state (forward at the last token, backward at the first), "maxlast": max and last side by side
    d_out: int = 0  # linear projection after pooling; 0 = none (vector is the pooled LSTM state)
    dropout: float = 0.0  # on embeddings and pooled vectors, training only

    @property
    def d_vector(self) -> int:
        return vector_dim(asdict(self))
