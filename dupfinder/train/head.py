"""Training the verdict head over a trained encoder: the labeled pairs of the training file (the
encoder's own training split; its validation split chooses the threshold), the encoder's vectors
computed once, plus constructed pairs that teach what one unknown word does. Writes verdict.npz and
the manifest's "verdict" entry into the model directory; the encoder's files are not touched."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dupfinder.atomic import write_atomic
from dupfinder.io import Pairs, duplicate_clusters, load_pairs
from dupfinder.model.encoder import Encoder, load_model
from dupfinder.model.files import load_numpy_weights, read_json, sha256_hex
from dupfinder.train.batches import split_by_cluster
from dupfinder.verdict.features import N_TEXT, TextFeaturizer, document_idf
from dupfinder.verdict.head import VERDICT_FILE, head_arrays, npz_bytes
from dupfinder.text import UNK_ID, tokenize


@dataclass
class HeadConfig:
    hidden: int = 256  # first hidden layer
    hidden2: int = 64  # second hidden layer
    epochs: int = 6  # passes over the training pairs
    batch_size: int = 512
    lr: float = 2e-3  # Adam, cosine decay to lr_floor x lr
    lr_floor: float = 0.05
    weight_decay: float = 1e-5
    input_dropout: float = 0.1  # the encoder saw these pairs: its vectors fit them better than new ones
    unknown_pairs: int = 20000  # constructed pairs per kind that teach unknown words (0: none)
    wordnet_pairs: int = 0  # WordNet one-word pairs from training questions (train/wordnet_pairs.py; needs nltk and WordNet's files)
    vector_dims: bool = True  # the head reads |u - v| and u * v; False: only their cosine (and the text features)
    calibration_holdout: float = 0.05  # share of the training split's pairs kept from the head to choose its threshold with the validation split
    seed: int = 0
    threads: int = 1


@dataclass
class PairSet:
    """Pairs as rows into one vector table, their text features and labels."""

    a: np.ndarray  # (n,) int64 rows of `vectors`
    b: np.ndarray  # (n,)
    text: np.ndarray  # (n, N_TEXT) float32
    label: np.ndarray  # (n,) float32


def encoder_split(pairs: Pairs, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """The train / validation split the encoder was trained with (same seed and fraction), so the
    head's threshold is chosen on clusters neither stage trained on."""
    config = manifest.get("training", {}).get("config", {})
    return split_by_cluster(pairs, duplicate_clusters(pairs), float(config.get("val_fraction", 0.03)), int(config.get("seed", 0)))


def featurizer_for(encoder: Encoder, token_lists) -> TextFeaturizer:
    weights = load_numpy_weights(encoder.files)
    if weights is None:
        raise ValueError(f"{encoder.path} has no weights.npz")
    idf, idf_unknown = document_idf(token_lists, encoder.vocab)
    return TextFeaturizer(encoder.vocab, encoder.text_config, idf, idf_unknown, weights["embed.weight"])


def pair_set(featurizer: TextFeaturizer, texts: dict, row: dict, pairs: Pairs, log=print) -> PairSet:
    qs = {}
    t = time.time()
    for q in np.unique(np.r_[pairs.qid1, pairs.qid2]).tolist():
        qs[q] = featurizer.question(texts[q])
    text = featurizer.pairs([qs[q] for q in pairs.qid1.tolist()], [qs[q] for q in pairs.qid2.tolist()])
    log(f"text features of {len(pairs):,} pairs in {time.time() - t:.0f} s")
    a = np.fromiter((row[q] for q in pairs.qid1.tolist()), np.int64, len(pairs))
    b = np.fromiter((row[q] for q in pairs.qid2.tolist()), np.int64, len(pairs))
    return PairSet(a, b, text, pairs.label.astype(np.float32))


_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def made_up_word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_LETTERS, rng.integers(5, 10)))


def unknown_word_pairs(featurizer: TextFeaturizer, encoder: Encoder, texts: dict, pairs: Pairs, n: int, seed: int,
                       log=print) -> tuple[np.ndarray, PairSet]:
    """Constructed pairs from training questions, each with one rare word replaced by made-up words
    (which the encoder reads as <unk>, or by its subword table where the model has one):
    - a question with the word as X against the same question with Y: not duplicates (Zorblax/Quibbit);
    - a question against itself with the word as X: not duplicates (a new term instead of a known one);
    - a duplicate pair whose two questions share the word, both with X: still duplicates.
    Returns the new vectors and pairs indexing them (rows from 0)."""
    rng = np.random.default_rng(seed)
    cfg = encoder.text_config

    def swap(text: str, word: str, new: str) -> str:
        return " ".join(new if t == word else t for t in tokenize(text, cfg))

    def rare_word(tokens: list[str], others: set[str] | None = None) -> str | None:
        cand = [t for t in set(tokens) if t.isalpha() and len(t) > 3 and (others is None or t in others)]
        cand = [t for t in cand if featurizer.idf[featurizer.vocab.stoi.get(t, UNK_ID)] > 6.0]
        return str(rng.choice(sorted(cand))) if cand else None

    new_texts: list[str] = []
    a_idx, b_idx, labels = [], [], []
    qids = np.unique(np.r_[pairs.qid1, pairs.qid2])
    for q in rng.permutation(qids)[: 2 * n].tolist():
        tokens = tokenize(texts[q], cfg)
        w = rare_word(tokens)
        if w is None:
            continue
        x, y = made_up_word(rng), made_up_word(rng)
        base = len(new_texts)
        new_texts += [" ".join(tokens), swap(texts[q], w, x), swap(texts[q], w, y)]
        a_idx += [base + 1, base]
        b_idx += [base + 2, base + 1]
        labels += [0, 0]
        if len(labels) >= 2 * n:
            break
    dup = np.flatnonzero(pairs.label == 1)
    kept = 0
    for i in rng.permutation(dup).tolist():
        t1, t2 = texts[int(pairs.qid1[i])], texts[int(pairs.qid2[i])]
        w = rare_word(tokenize(t1, cfg), set(tokenize(t2, cfg)))
        if w is None:
            continue
        x = made_up_word(rng)
        base = len(new_texts)
        new_texts += [swap(t1, w, x), swap(t2, w, x)]
        a_idx.append(base)
        b_idx.append(base + 1)
        labels.append(1)
        kept += 1
        if kept >= n:
            break
    t = time.time()
    vectors = encoder.encode(new_texts)
    qt = featurizer.questions(new_texts)
    text = featurizer.pairs([qt[i] for i in a_idx], [qt[i] for i in b_idx])
    log(f"{len(labels):,} unknown-word pairs ({kept:,} duplicates) from {len(new_texts):,} questions in {time.time() - t:.0f} s")
    return vectors, PairSet(np.asarray(a_idx, dtype=np.int64), np.asarray(b_idx, dtype=np.int64), text, np.asarray(labels, dtype=np.float32))


def train_head(vectors: np.ndarray, train: PairSet, val: PairSet, config: HeadConfig,
               log: Callable[[str], None] = print) -> tuple[dict, np.ndarray, np.ndarray, list]:
    """Fit the MLP; returns numpy weights, the feature mean and std, and per-epoch validation AUC."""
    import torch

    from dupfinder.evaluation.metrics import roc_auc
    from dupfinder.train.loop import Schedule, classifier_step

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    V = torch.from_numpy(np.asarray(vectors, dtype=np.float32))  # (N, d)

    def features(ps: PairSet, idx) -> torch.Tensor:
        u, v = V[torch.from_numpy(ps.a[idx])], V[torch.from_numpy(ps.b[idx])]  # (b, d), (b, d)
        prod = u * v
        text = torch.from_numpy(ps.text[idx])
        if not config.vector_dims:
            return torch.cat([prod.sum(1, keepdim=True), text], 1)  # (b, 1 + N_TEXT)
        return torch.cat([(u - v).abs(), prod, prod.sum(1, keepdim=True), text], 1)  # (b, F)

    sample = rng.choice(len(train.label), min(50000, len(train.label)), replace=False)
    x = features(train, sample).numpy()
    mean, std = x.mean(0), x.std(0) + 1e-4
    n_in = x.shape[1]
    net = torch.nn.Sequential(
        torch.nn.Dropout(config.input_dropout), torch.nn.Linear(n_in, config.hidden), torch.nn.ReLU(),
        torch.nn.Linear(config.hidden, config.hidden2), torch.nn.ReLU(), torch.nn.Linear(config.hidden2, 1),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * ((len(train.label) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, Schedule(steps, 0, config.lr_floor))  # cosine decay, no warm-up
    m_t, s_t = torch.from_numpy(mean), torch.from_numpy(std)
    y_all = torch.from_numpy(train.label)
    history = []
    for epoch in range(1, config.epochs + 1):
        t = time.time()
        net.train()
        order = rng.permutation(len(train.label))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            total += classifier_step(opt, sched, net((features(train, idx) - m_t) / s_t)[:, 0], y_all[idx])
        net.eval()
        with torch.no_grad():
            p = torch.cat([net((features(val, np.arange(s, min(s + 8192, len(val.label)))) - m_t) / s_t)[:, 0]
                           for s in range(0, len(val.label), 8192)]).numpy()
        auc = roc_auc(p, val.label)
        history.append({"epoch": epoch, "loss": total / len(order), "val_roc_auc": auc, "seconds": round(time.time() - t, 1)})
        log(f"head epoch {epoch}: loss {total / len(order):.4f}, validation ROC-AUC {auc:.4f} ({time.time() - t:.0f} s)")
    lin = [m for m in net if isinstance(m, torch.nn.Linear)]
    weights = {}
    for i, layer in enumerate(lin, 1):
        weights[f"w{i}"] = layer.weight.detach().numpy().T.copy()
        weights[f"b{i}"] = layer.bias.detach().numpy().copy()
    return weights, mean, std, history


def save_head(model_dir: str | Path, arrays: dict, threshold: float, record: dict) -> dict:
    """Write verdict.npz, then the manifest with its "verdict" entry (the commit point), each atomically.
    The fingerprint covers the encoder's files only, so it does not change."""
    model_dir = Path(model_dir)
    data = npz_bytes(arrays)
    write_atomic(model_dir / VERDICT_FILE, data)
    manifest = read_json(model_dir / "manifest.json")
    manifest["verdict"] = {"kind": "pair-head", "file": VERDICT_FILE, "sha256": sha256_hex(data), "threshold": float(threshold), **record}
    write_atomic(model_dir / "manifest.json", json.dumps(manifest, indent=2).encode())
    return manifest["verdict"]


def cosine_floor(cosines: np.ndarray, duplicate: np.ndarray, share: float = 0.01) -> float:
    """The cosine below which only `share` of the head's duplicate verdicts lie: dedup searches
    candidate edges down to it (a lower floor finds more edges and costs more head calls)."""
    called = np.asarray(cosines)[np.asarray(duplicate, bool)]
    return float(np.quantile(called, share)) if len(called) else 0.3


def train_verdict(model_dir: str | Path, train_file: str | Path, config: HeadConfig | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Train the pair head of a model directory on a labeled pairs file and store it there: the
    encoder's own training split trains it, its validation split chooses the threshold (balanced
    accuracy, as tau is chosen). Returns the manifest's new "verdict" entry."""
    from dupfinder.evaluation.calibrate import advise

    config = config or HeadConfig()
    t0 = time.time()
    encoder = load_model(model_dir, backend="torch" if _torch() else "auto")
    pairs = load_pairs(train_file)
    tr_idx, va_idx = encoder_split(pairs, encoder.manifest)
    train, val = pairs.subset(tr_idx), pairs.subset(va_idx)
    log(f"head: {len(train):,} training pairs, {len(val):,} validation pairs (the encoder's split)")
    qids = np.asarray(sorted(pairs.questions), dtype=np.int64)
    row = {q: i for i, q in enumerate(qids.tolist())}
    vectors = encoder.encode([pairs.questions[q] for q in qids.tolist()])  # (n, d)
    log(f"encoded {len(qids):,} questions in {time.time() - t0:.0f} s")
    train_q = np.unique(np.r_[train.qid1, train.qid2]).tolist()
    feat = featurizer_for(encoder, (tokenize(pairs.questions[q], encoder.text_config) for q in train_q))
    ps_tr = pair_set(feat, pairs.questions, row, train, log)
    ps_va = pair_set(feat, pairs.questions, row, val, log)
    # the threshold is chosen on the encoder's validation split (clusters it never saw) and on a
    # share of its training pairs the head never saw (questions like those a deployed index holds)
    hold = np.random.default_rng(2).random(len(ps_tr.label)) < config.calibration_holdout
    ps_cal = PairSet(np.r_[ps_va.a, ps_tr.a[hold]], np.r_[ps_va.b, ps_tr.b[hold]], np.r_[ps_va.text, ps_tr.text[hold]],
                     np.r_[ps_va.label, ps_tr.label[hold]])
    ps_tr = PairSet(ps_tr.a[~hold], ps_tr.b[~hold], ps_tr.text[~hold], ps_tr.label[~hold])
    if config.unknown_pairs:
        extra_vec, extra = unknown_word_pairs(feat, encoder, pairs.questions, train, config.unknown_pairs, config.seed, log)
        off = len(vectors)
        vectors = np.concatenate([vectors, extra_vec])
        ps_tr = PairSet(np.r_[ps_tr.a, extra.a + off], np.r_[ps_tr.b, extra.b + off], np.r_[ps_tr.text, extra.text],
                        np.r_[ps_tr.label, extra.label])
    if config.wordnet_pairs:
        w_vec, w_ps = wordnet_pair_set(feat, encoder, (pairs.questions[q] for q in train_q), config, log)
        off = len(vectors)
        vectors = np.concatenate([vectors, w_vec])
        ps_tr = PairSet(np.r_[ps_tr.a, w_ps.a + off], np.r_[ps_tr.b, w_ps.b + off], np.r_[ps_tr.text, w_ps.text],
                        np.r_[ps_tr.label, w_ps.label])
    weights, mean, std, history = train_head(vectors, ps_tr, ps_va, config, log)
    from dupfinder.verdict.head import PairHead
    from dupfinder.verdict.rewording import pairs_record as rewording_record

    head = PairHead(weights, mean, std, feat, 0.5)
    u, v = vectors[ps_cal.a], vectors[ps_cal.b]
    p = head.probabilities(u, v, ps_cal.text)
    advice = advise(p, ps_cal.label, balanced=True)
    best = advice["best_accuracy"]
    threshold = best["threshold"]
    floor = cosine_floor((u * v).sum(1), p >= threshold)
    record = {
        "cosine_floor": floor,
        "config": asdict(config),
        "validation": {k: best[k] for k in ("pairs", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc")},
        "calibration": {"validation_pairs": int(len(ps_va.label)), "held_out_training_pairs": int(hold.sum())},
        "training": {"file": Path(train_file).name, "sha256": _sha256(train_file), "pairs": int(len(ps_tr.label)),
                     "seconds": round(time.time() - t0, 1), "history": history},
        "rewording": rewording_record(pairs, encoder.text_config, Path(train_file).name),
    }
    entry = save_head(model_dir, head_arrays(weights, mean, std, feat.idf, feat.idf_unknown), threshold, record)
    log(f"head: threshold {threshold:.4f} (validation balanced accuracy {best['balanced_accuracy']:.4f}, ROC-AUC {best['roc_auc']:.4f}), "
        f"cosine floor {floor:.3f}; wrote {Path(model_dir) / VERDICT_FILE} in {time.time() - t0:.0f} s")
    return entry


def wordnet_pair_set(feat: TextFeaturizer, encoder: Encoder, texts, config: HeadConfig, log=print) -> tuple[np.ndarray, PairSet]:
    """`config.wordnet_pairs` WordNet one-word pairs (train/wordnet_pairs.py), encoded and featurized."""
    import os

    from dupfinder.train.wordnet_pairs import wordnet_pairs

    t = time.time()
    trained = int(encoder.manifest.get("vocabulary_extension", {}).get("trained_words", len(encoder.vocab)))
    embed = load_numpy_weights(encoder.files)["embed.weight"].astype(np.float32)
    triples = wordnet_pairs(texts, lambda x: tokenize(x, encoder.text_config), encoder.vocab, trained, config.wordnet_pairs,
                            embed, seed=config.seed, data_dir=os.environ.get("NLTK_DATA"))
    flat = [x for a, b, _ in triples for x in (a, b)]
    vectors = encoder.encode(flat)
    qt = feat.questions(flat)
    ps = PairSet(np.arange(0, len(flat), 2), np.arange(1, len(flat), 2), feat.pairs(qt[0::2], qt[1::2]),
                 np.array([label for _, _, label in triples], np.float32))
    log(f"{len(triples):,} WordNet pairs ({int(ps.label.sum()):,} duplicates) in {time.time() - t:.0f} s")
    return vectors, ps


def _sha256(path) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _torch() -> bool:
    from dupfinder.model.encoder import torch_installed

    return torch_installed()
