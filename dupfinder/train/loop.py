"""Training: data preparation, train_one_epoch / evaluate / train, resumable checkpoints.

A checkpoint holds everything to resume (model, optimizer, scheduler, position in the epoch);
it is written atomically, so Ctrl-C or a kill leaves the last one usable.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dupfinder.model.files import ModelFiles, load_network, read_model_dir, save_model, write_atomic
from dupfinder.io import PairColumns, Pairs, duplicate_clusters, load_pairs
from dupfinder.train.batches import HardNegatives, PairBatcher, split_by_cluster
from dupfinder.train.recipe import TrainConfig
from dupfinder.train.teacher import Teacher
from dupfinder.model.encoder import encode_sequences, pad_batch
from dupfinder.errors import InputError, ModelError
from dupfinder.evaluation.calibrate import calibrate
from dupfinder.evaluation.metrics import pair_metrics
from dupfinder.model.extend import load_glove
from dupfinder.train.losses import in_batch_softmax_loss, labeled_negative_loss, triplet_loss_hard
from dupfinder.model.network import ModelConfig, SiameseEncoder
from dupfinder.text import Vocab, tokenize

__all__ = ["TrainConfig", "TrainingInterrupted", "prepare", "evaluate", "batch_loss", "train"]


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the checkpoint named in the message resumes it."""


@dataclass
class Prepared:
    """Tokenized training data: token ids per question id and the train / validation pairs."""

    vocab: Vocab
    tokens: dict[int, np.ndarray]
    train: Pairs
    val: Pairs
    cluster_of: dict[int, int]
    stats: dict


def prepare(path: str | Path, config: TrainConfig, vocab: Vocab | None = None, log: Callable[[str], None] = print,
            columns: PairColumns | None = None) -> Prepared:
    """Read, cluster, split and tokenize a pairs file; builds the vocabulary from the train split."""
    pairs = load_pairs(path, columns)
    log(pairs.report.summary())
    if not (pairs.label == 1).any():
        raise InputError(f"{path} has no duplicate pairs (is_duplicate = 1); training needs them")
    clusters = duplicate_clusters(pairs)
    train_idx, val_idx = split_by_cluster(pairs, clusters, config.val_fraction, config.seed)
    train, val = pairs.subset(train_idx), pairs.subset(val_idx)
    if (train.label == 1).sum() < config.batch_size:
        raise InputError(
            f"{path} has {(train.label == 1).sum()} duplicate pairs for training, fewer than one batch; "
            f"use a smaller --batch-size"
        )
    token_lists = {q: tokenize(t, config.text) for q, t in pairs.questions.items()}
    if vocab is None:
        train_qids = np.unique(np.r_[train.qid1, train.qid2])
        vocab = Vocab.build((token_lists[q] for q in train_qids.tolist()), config.min_freq, config.max_vocab)
    tokens = {q: vocab.encode(t) for q, t in token_lists.items()}
    stats = {
        "pairs_read": pairs.report.rows,
        "pairs_kept": len(pairs),
        "train_pairs": len(train),
        "train_duplicates": int(train.label.sum()),
        "val_pairs": len(val),
        "val_duplicates": int(val.label.sum()),
        "dropped_straddling": len(pairs) - len(train) - len(val),
        "vocab_size": len(vocab),
    }
    log(
        f"train {len(train):,} pairs ({stats['train_duplicates']:,} duplicates), "
        f"validation {len(val):,} pairs ({stats['val_duplicates']:,} duplicates), vocabulary {len(vocab):,}"
    )
    return Prepared(vocab, tokens, train, val, clusters, stats)


def glove_init(embedding: torch.nn.Embedding, vocab: Vocab) -> int:
    """Copy GloVe 6B 50d vectors into the embedding rows of known words; returns how many.

    GloVe comes from the optional `glove` extra; without it the embedding stays random.
    """
    glove = load_glove()
    if glove is None:
        return 0
    words, vectors = glove
    if vectors.shape[1] != embedding.weight.shape[1]:
        return 0
    row_of = {w: i for i, w in enumerate(words)}
    hits = [(i, row_of[w]) for i, w in enumerate(vocab.itos) if w in row_of and i > 1]
    if not hits:
        return 0
    ours, theirs = zip(*hits)
    with torch.no_grad():
        src = torch.from_numpy(np.asarray(vectors[list(theirs)], dtype=np.float32))
        # scale the random rows to GloVe's spread so known and unknown words start alike
        embedding.weight.mul_(src.std() / embedding.weight.std())
        embedding.weight[list(ours)] = src
        embedding.weight[0].zero_()
    return len(hits)


def encode_qids(network: SiameseEncoder, tokens: dict[int, np.ndarray], qids: np.ndarray, batch_size: int = 1024) -> dict[int, np.ndarray]:
    """Unit vectors for each distinct qid, in eval mode."""
    unique = np.unique(qids)
    out = encode_sequences(network, [tokens[q] for q in unique.tolist()], batch_size)
    return dict(zip(unique.tolist(), out))


def pair_scores(network: SiameseEncoder, tokens: dict[int, np.ndarray], pairs: Pairs) -> np.ndarray:
    vec = encode_qids(network, tokens, np.r_[pairs.qid1, pairs.qid2])
    v1 = np.stack([vec[q] for q in pairs.qid1.tolist()])
    v2 = np.stack([vec[q] for q in pairs.qid2.tolist()])
    return (v1 * v2).sum(1)


def evaluate(network: SiameseEncoder, tokens: dict[int, np.ndarray], pairs: Pairs, threshold: float | None = None) -> dict:
    """Pair metrics on `pairs`; with no threshold, tau is calibrated on these pairs."""
    scores = pair_scores(network, tokens, pairs)
    cal = calibrate(scores, pairs.label)
    metrics = pair_metrics(scores, pairs.label, cal["threshold"] if threshold is None else threshold)
    metrics["calibration"] = cal
    return metrics


class Schedule:
    """Linear warm-up, then cosine decay to `floor` x the peak rate."""

    def __init__(self, total: int, warmup: int, floor: float):
        self.total, self.warmup, self.floor = max(1, total), warmup, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))


def classifier_step(optimizer, scheduler, logits: torch.Tensor, target: torch.Tensor) -> float:
    """One step of a pair classifier (the verdict head, the verifier) on binary cross-entropy:
    returns the batch's summed loss, for an epoch's mean."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return float(loss.detach()) * len(target)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches of the current epoch already done
    global_step: int = 0
    history: list = field(default_factory=list)  # per-epoch metrics
    seconds: float = 0.0  # training wall time so far, across resumes
    epoch_loss: float = 0.0  # sum of batch losses so far in the current epoch
    files: dict = field(default_factory=dict)  # the teacher and starting model as the manifest records them (no paths)


def batch_loss(
    network: SiameseEncoder, prepared: Prepared, config: TrainConfig, dups: Pairs, negs: Pairs,
    hard: np.ndarray | None = None, teacher: Teacher | None = None, rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """The loss of one batch of duplicate pairs `dups`: the triplet loss over S = V1 V2^T (and S^T);
    the labeled non-duplicates `negs` ranked below every duplicate; the InfoNCE term, with `hard`
    (question ids of hard negatives) as extra columns; and with a `teacher`, for up to kd_swaps
    anchors, the teacher's cosine to one of their neighbours (`rng` picks which) as the target of
    the student's."""
    hard = np.zeros(0, np.int64) if hard is None else hard
    near_rows, near = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if teacher is not None and config.kd_swaps and config.kd_swap_weight:
        near_rows, near = teacher.neighbours_for(dups.qid1, config.kd_swaps, rng)
    qids = np.r_[dups.qid1, dups.qid2, negs.qid1, negs.qid2, hard, near]
    ids, lengths = pad_batch([prepared.tokens[q] for q in qids.tolist()])
    v = network(ids, lengths)  # (2b + 2k + h + r, D)
    b, k, h, r = len(dups), len(negs), len(hard), len(near)
    v1, v2 = v[:b], v[b : 2 * b]  # (b, D) each
    sim = v1 @ v2.T  # (b, b): cosines, since rows are unit vectors
    loss = triplet_loss_hard(sim, config.margin, reduction="mean")
    if config.symmetric:
        loss = (loss + triplet_loss_hard(sim.T, config.margin, reduction="mean")) / 2
    if config.nce_weight:
        rows, cols = sim, sim.T
        if h:
            vh = v[2 * b + 2 * k : 2 * b + 2 * k + h]  # (h, D)
            c = prepared.cluster_of
            same = torch.from_numpy(np.equal.outer([c[q] for q in dups.qid1.tolist()], [c[q] for q in hard.tolist()]))
            rows = torch.cat([rows, (v1 @ vh.T).masked_fill(same, float("-inf"))], 1)  # (b, b + h)
            cols = torch.cat([cols, (v2 @ vh.T).masked_fill(same, float("-inf"))], 1)
        nce = (in_batch_softmax_loss(rows, config.nce_scale, "none") + in_batch_softmax_loss(cols, config.nce_scale, "none")).mean() / 2
        loss = loss + config.nce_weight * nce
    if k:
        n1, n2 = v[2 * b : 2 * b + k], v[2 * b + k : 2 * b + 2 * k]  # (k, D) each
        loss = loss + config.neg_weight * labeled_negative_loss(sim.diagonal(), (n1 * n2).sum(1), config.margin)
    if r:
        # each anchor and its neighbour should be as similar as the teacher says they are, on the
        # student's scale: distances 1 - cos stretched, so the two thresholds can line up
        student = (v1[near_rows] * v[-r:]).sum(1)  # (r,)
        graded = (teacher(dups.qid1[near_rows]) * teacher(near)).sum(1)  # (r,)
        target = 1 - config.kd_swap_stretch * (1 - graded)
        loss = loss + config.kd_swap_weight * torch.nn.functional.mse_loss(student, target)
    return loss


def save_checkpoint(path: Path, network, optimizer, config: TrainConfig, state: TrainState, vocab: Vocab) -> None:
    buf = io.BytesIO()
    torch.save(
        {
            "model": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "config": json.dumps(asdict(config)),
            "state": json.dumps(asdict(state)),
            "vocab": vocab.to_json(),
            "torch_rng": torch.get_rng_state(),
        },
        buf,
    )
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        ck["config"] = TrainConfig.from_dict(json.loads(ck["config"]))
        ck["state"] = TrainState(**json.loads(ck["state"]))
        ck["vocab"] = Vocab.from_json(ck["vocab"])
        return ck
    except FileNotFoundError:
        raise ModelError(f"no checkpoint to resume at {path}; train without --resume") from None
    except Exception as e:
        raise ModelError(f"checkpoint {path} is unreadable ({type(e).__name__}); train again without --resume") from None


def train(
    train_file: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    dev_file: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress_factory: Callable | None = None,
    columns: PairColumns | None = None,
) -> dict:
    """Train an encoder on a pairs file and write a model directory to `out_dir`.

    The checkpoint lives in `out_dir/checkpoint.pt`; with `resume`, training continues from it with
    the configuration it recorded. `dev_file`, when given, is scored after each epoch for the log
    only: it chooses nothing.
    """
    out = Path(out_dir)
    ckpt_path = out / "checkpoint.pt"
    ck = load_checkpoint(ckpt_path) if resume else None
    if ck is not None:
        config = ck["config"]
    config = config or TrainConfig()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    state = ck["state"] if ck is not None else TrainState()
    start, start_network = None, None
    if ck is None and config.init:
        start = read_model_dir(config.init)  # before minutes of reading, so a broken one fails first
        start_network = load_network(start)
        config.model, config.text = ModelConfig(**start.model_config), start.text_config
        config.init_trained_words = start.manifest.get("vocabulary_extension", {}).get("trained_words")
        state.files["init"] = {"name": Path(config.init).resolve().name, "fingerprint": start.fingerprint}
    teacher = None
    if config.teacher and config.kd_swaps:  # before minutes of reading
        teacher = load_teacher(config.teacher, state.files.get("teacher"), log)
        state.files["teacher"] = {"name": Path(config.teacher).name, "sha256": teacher.sha256}

    prepared = prepare(train_file, config, vocab=ck["vocab"] if ck else start.vocab if start else None, log=log, columns=columns)
    out.mkdir(parents=True, exist_ok=True)
    dev = load_pairs(dev_file, columns) if dev_file else None
    dev_tokens = None
    if dev is not None:
        dev_tokens = {q: prepared.vocab.encode(tokenize(t, config.text)) for q, t in dev.questions.items()}

    config.model.vocab_size = len(prepared.vocab)
    network = start_network if start_network is not None else SiameseEncoder(config.model)
    if start is not None:
        log(f"starting from {start.path} (fingerprint {start.fingerprint}, vocabulary {len(start.vocab):,}){split_warning(start, config, train_file)}")
    elif ck is None:
        n = glove_init(network.embed, prepared.vocab) if config.glove else 0
        log(f"GloVe vectors for {n:,} of {len(prepared.vocab):,} words" if n else "embeddings start random")
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    train = prepared.train
    dup_pairs = np.flatnonzero(train.label == 1)
    neg_pairs = np.flatnonzero(train.label == 0)
    # labeled non-duplicates inside one duplicate cluster contradict the clusters: leave them out
    c = prepared.cluster_of
    neg_pairs = neg_pairs[[c[a] != c[b] for a, b in zip(train.qid1[neg_pairs].tolist(), train.qid2[neg_pairs].tolist())]]
    positives = train.subset(dup_pairs)
    batcher = PairBatcher(np.fromiter((c[q] for q in positives.qid1.tolist()), dtype=np.int64), config.batch_size, config.seed)
    steps_per_epoch = len(batcher.epoch(0))
    hard_negatives = HardNegatives(train, c) if config.nce_hard and config.nce_weight else None
    if teacher is not None:
        missing = teacher.missing(np.r_[positives.qid1, positives.qid2])
        if len(missing):
            raise InputError(
                f"teacher file {config.teacher} lacks vectors for {len(missing):,} training questions "
                f"(qid {missing[0]}, ...); make it from the same training file"
            )
        if len(strangers := np.setdiff1d(teacher.sources, list(prepared.tokens))):
            raise InputError(f"the teacher's neighbour qid {strangers[0]} is not a question of the training file; make the teacher from it")
        val_qids = np.unique(np.r_[prepared.val.qid1, prepared.val.qid2])
        if dropped := teacher.drop_neighbours_in(val_qids):
            log(f"left out {dropped:,} teacher neighbours that are validation questions")
        stretch = f", distances stretched x{config.kd_swap_stretch}" if config.kd_swap_stretch != 1.0 else ""
        log(f"distilling from {config.teacher} (sha256 {teacher.sha256[:12]}..., {teacher.vectors.shape[1]}-d vectors): up to "
            f"{config.kd_swaps} of its {len(teacher.sources):,} neighbours per batch at weight {config.kd_swap_weight}{stretch}")
    schedule = Schedule(steps_per_epoch * config.epochs, config.warmup_steps, config.lr_floor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    if ck is not None:
        network.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule, last_epoch=state.global_step - 1)
        log(f"resumed at epoch {state.epoch + 1}, batch {state.step_in_epoch} of {steps_per_epoch}")

    network.train()
    while state.epoch < config.epochs:
        batches = batcher.epoch(state.epoch)
        neg_order = np.random.default_rng([config.seed, state.epoch, 1]).permutation(neg_pairs)
        bar = progress_factory(len(batches), f"epoch {state.epoch + 1}/{config.epochs}") if progress_factory else None
        if bar is not None:
            bar.update(state.step_in_epoch)
        started = time.perf_counter()
        if state.step_in_epoch == 0:
            state.epoch_loss = 0.0
        try:
            for i in range(state.step_in_epoch, len(batches)):
                k = config.neg_pairs
                negs = np.take(neg_order, np.arange(i * k, (i + 1) * k), mode="wrap") if k and len(neg_order) else np.zeros(0, np.int64)
                dups = positives.subset(batches[i])
                hard = None
                if hard_negatives is not None:
                    hard = hard_negatives.sample([c[q] for q in dups.qid1.tolist()], np.random.default_rng([config.seed, state.epoch, 3, i]))
                loss = batch_loss(network, prepared, config, dups, train.subset(negs), hard, teacher,
                                  np.random.default_rng([config.seed, state.epoch, 4, i]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                state.step_in_epoch = i + 1
                state.global_step += 1
                state.epoch_loss += loss.item()
                if bar is not None:
                    bar.update(1, loss=loss.item(), lr=scheduler.get_last_lr()[0])
                if state.global_step % config.checkpoint_every == 0:
                    state.seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    save_checkpoint(ckpt_path, network, optimizer, config, state, prepared.vocab)
        except KeyboardInterrupt:
            state.seconds += time.perf_counter() - started
            save_checkpoint(ckpt_path, network, optimizer, config, state, prepared.vocab)
            raise TrainingInterrupted(f"interrupted; checkpoint saved to {ckpt_path}, continue with --resume") from None
        finally:
            if bar is not None:
                bar.close()
        state.seconds += time.perf_counter() - started
        metrics = evaluate(network, prepared.tokens, prepared.val)
        row = {
            "epoch": state.epoch + 1,
            "seconds": round(state.seconds, 1),
            "train_loss": round(state.epoch_loss / max(1, len(batches)), 5),
            "val": summarize(metrics),
        }
        if dev is not None:
            row["dev"] = summarize(evaluate(network, dev_tokens, dev, threshold=metrics["calibration"]["threshold"]))
        state.history.append(row)
        log(json.dumps(row))
        state.epoch += 1
        state.step_in_epoch = 0
        save_checkpoint(ckpt_path, network, optimizer, config, state, prepared.vocab)
        network.train()

    final = evaluate(network, prepared.tokens, prepared.val)
    # a later extend-vocab fits its map on the words a network learned, not on an earlier extension's
    init_record = {"vocabulary_extension": {"trained_words": config.init_trained_words}} if config.init_trained_words else {}
    manifest = save_model(
        out,
        network,
        prepared.vocab,
        config.text,
        threshold=final["calibration"]["threshold"],
        extra={
            "calibration": final["calibration"],
            "validation": summarize(final),
            "training": {
                "file": str(train_file),
                "config": recorded_config(config, state.files),
                "data": prepared.stats,
                "seconds": round(state.seconds, 1),
                "history": state.history,
            },
            **init_record,
        },
    )
    return manifest


def load_teacher(path: str, recorded: dict | None, log: Callable[[str], None]) -> Teacher:
    """The teacher file, checked for neighbours; a resumed run refuses a file that changed since it began."""
    teacher = Teacher(path)
    if recorded is not None and recorded.get("sha256") != teacher.sha256:
        raise InputError(f"teacher file {path} is not the one this run began with (sha256 {teacher.sha256[:12]}..., "
                         f"not {str(recorded.get('sha256'))[:12]}...); restore it, or train again without --resume")
    if not len(teacher.sources):
        raise InputError(f"teacher file {path} has no neighbours; make it with `dupfinder teacher TRAIN_FILE --out FILE --neighbours 3`")
    if teacher.near_misses:
        log(f"left out the teacher file's {teacher.near_misses:,} near misses: training no longer learns from them")
    return teacher


def recorded_config(config: TrainConfig, files: dict) -> dict:
    """The configuration as the manifest records it: the teacher file by name and sha256 and the
    starting model by name and fingerprint, never a path of the machine that trained."""
    record = asdict(config)
    for key in ("teacher", "init"):
        if record[key] is not None:
            record[key] = files.get(key, {"name": Path(record[key]).name})
    return record


def split_warning(start: ModelFiles, config: TrainConfig, train_file: str | Path) -> str:
    """A note when the model to start from was trained on a file of the same name with another
    validation split: its training then saw questions that this run holds out to choose tau."""
    before = start.manifest.get("training", {})
    old = before.get("config", {})
    if Path(str(before.get("file", ""))).name != Path(train_file).name:
        return ""
    if (old.get("seed"), old.get("val_fraction")) == (config.seed, config.val_fraction):
        return "; same validation split"
    return (f"; warning: it was trained on {Path(train_file).name} with seed {old.get('seed')} and val_fraction "
            f"{old.get('val_fraction')}, so this run's validation split holds questions it trained on and tau may be too low")


def summarize(metrics: dict) -> dict:
    keep = ("pairs", "threshold", "accuracy", "precision", "recall", "f1", "roc_auc")
    return {k: round(metrics[k], 4) if isinstance(metrics[k], float) else metrics[k] for k in keep}
