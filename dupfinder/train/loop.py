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
from dupfinder.train.batches import HardNegatives, OverlapBias, PairBatcher, cluster_positives, split_by_cluster
from dupfinder.train.teacher import Teacher
from dupfinder.model.encoder import encode_sequences, pad_batch
from dupfinder.errors import InputError, ModelError
from dupfinder.evaluation.calibrate import calibrate
from dupfinder.evaluation.metrics import pair_metrics
from dupfinder.model.extend import load_glove
from dupfinder.train.losses import distill_loss, in_batch_softmax_loss, labeled_negative_loss, triplet_loss_hard, weighted_mean
from dupfinder.model.network import ModelConfig, SiameseEncoder
from dupfinder.text import TextConfig, Vocab, tokenize


@dataclass
class TrainConfig:
    seed: int = 0  # seeds the split, the batch order and the weights
    epochs: int = 8  # passes over the duplicate pairs (about 4 min each on one core for the default model)
    batch_size: int = 256  # duplicate pairs per batch; the other 255 are each anchor's negatives
    neg_pairs: int = 128  # labeled non-duplicate pairs added to each batch (0 = course recipe only)
    neg_weight: float = 1.0  # weight of the labeled-negative ranking term
    sub_negs: int = 0  # synthetic negatives per batch: a question with one word swapped for another
    sub_weight: float = 1.0  # weight of their ranking term
    cluster_pairs: float = 0.0  # implied duplicates (a = b, b = c, so a = c) added per labeled duplicate of a cluster
    margin: float = 0.25  # alpha of the triplet loss
    nce_weight: float = 0.25  # weight of an added in-batch softmax (InfoNCE) term over S and S^T (0 = off)
    nce_scale: float = 20.0  # its inverse temperature
    nce_hard: bool = False  # add to it, per anchor, a question labeled not a duplicate of its cluster
    teacher: str | None = None  # teacher vectors (.npz from `dupfinder teacher`) to distill from
    kd_weight: float = 0.0  # weight of the distillation term (0 = off)
    kd_scale: float = 20.0  # inverse temperature of its softmax, for teacher and student alike
    kd_negatives_only: bool = False  # leave each row's labeled duplicate out: the teacher only orders negatives
    kd_swaps: int = 0  # anchors per batch whose cosine to their near miss (from the teacher file) learns the teacher's
    kd_swap_weight: float = 1.0  # weight of that term
    kd_swap_below: float = 0.0  # near misses the teacher scores below this count as labeled non-duplicates (0 = off)
    kd_swap_stretch: float = 1.0  # the student's target distance 1 - cos is the teacher's times this
    debias_overlap: float = 0.0  # weigh labeled pairs by 1 - P(label | word overlap): 0 = off, 1 = fully
    init: str | None = None  # a model directory to start from (its network, vocabulary and text settings)
    init_trained_words: int | None = None  # of its vocabulary, the words training learned (the rest came from extend-vocab)
    symmetric: bool = True  # also use S^T (q2 as anchors), free since both sides are encoded
    lr: float = 2e-3  # Adam peak learning rate
    warmup_steps: int = 200  # linear warm-up, then cosine decay to lr_floor * lr
    lr_floor: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm
    val_fraction: float = 0.03  # pairs held out by cluster for validation and tau
    min_freq: int = 2  # words seen fewer times in training are <unk>
    max_vocab: int = 60000  # keeps the shipped model small (60k x 50 fp16 = 6 MB)
    glove: bool = True  # initialize embeddings from GloVe 6B 50d when the package is installed
    threads: int = 2  # torch intra-op threads
    checkpoint_every: int = 100  # steps between mid-epoch checkpoints
    model: ModelConfig = field(default_factory=ModelConfig)
    text: TextConfig = field(default_factory=TextConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        model = ModelConfig(**d.pop("model", {}))
        text = TextConfig(**d.pop("text", {}))
        return cls(**d, model=model, text=text)


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


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches of the current epoch already done
    global_step: int = 0
    history: list = field(default_factory=list)  # per-epoch metrics
    seconds: float = 0.0  # training wall time so far, across resumes
    epoch_loss: float = 0.0  # sum of batch losses so far in the current epoch


class WordSwapper:
    """Makes a near-miss negative from a question by replacing one of its words with another word.

    "Where are you from?" -> "Where are you going?": one changed word usually changes what is
    asked, and Quora pairs rarely show this for short, generic questions. Replacement words are
    drawn about as often as they occur (probability ~ 1/rank; the vocabulary is ordered by
    frequency), so most swaps put in a common word, as in the example. Articles are never swapped
    in or out: "a" for "the" rarely changes a question.
    """

    KEEP = frozenset({"a", "an", "the"})

    def __init__(self, vocab: Vocab):
        words = np.array([i for i, t in enumerate(vocab.itos) if i > 1 and t.isalpha() and t not in self.KEEP], dtype=np.int32)
        self.is_word = np.zeros(len(vocab), dtype=bool)
        self.is_word[words] = True
        p = 1.0 / (words - 1.0)
        self.words, self.cdf = words, np.cumsum(p / p.sum())

    def __call__(self, seqs: list[np.ndarray], rng: np.random.Generator) -> tuple[list[int], list[np.ndarray]]:
        """(indices of the questions used, their altered copies); questions with no word are skipped."""
        used, out = [], []
        if len(self.words) < 2:  # nothing to swap a word for
            return used, out
        draws = np.minimum(np.searchsorted(self.cdf, rng.random(len(seqs))), len(self.words) - 1)
        for i, s in enumerate(seqs):
            positions = np.flatnonzero(self.is_word[s])
            if not len(positions):
                continue
            pos = positions[rng.integers(len(positions))]
            word = self.words[draws[i]]
            new = s.copy()
            new[pos] = word if word != s[pos] else self.words[(draws[i] + 1) % len(self.words)]
            used.append(i)
            out.append(new)
        return used, out


def batch_loss(
    network: SiameseEncoder, prepared: Prepared, config: TrainConfig, dups: Pairs, negs: Pairs,
    swapped: tuple[list[int], list[np.ndarray]] = ([], []), hard: np.ndarray | None = None,
    teacher: Teacher | None = None, rng: np.random.Generator | None = None, bias: OverlapBias | None = None,
) -> torch.Tensor:
    """The loss of one batch. `swapped` = (rows of `dups` whose q1 was altered, the altered token ids);
    `hard` = question ids of hard negatives, extra columns of the InfoNCE term; `teacher` = vectors
    whose in-batch similarities the student learns to rank alike, and near misses it grades (`rng`
    picks among a question's near misses); `bias` weighs the labeled pairs against the word-overlap
    shortcut (`config.debias_overlap`)."""
    hard = np.zeros(0, np.int64) if hard is None else hard
    qids = np.r_[dups.qid1, dups.qid2, negs.qid1, negs.qid2, hard]
    near_rows, near = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if teacher is not None and config.kd_swaps:
        near_rows, near = teacher.swaps_for(dups.qid1, config.kd_swaps, rng)
    ids, lengths = pad_batch([prepared.tokens[q] for q in qids.tolist()] + swapped[1] + [teacher.swap_tokens[j] for j in near.tolist()])
    v = network(ids, lengths)  # (2b + 2k + h + m + r, D)
    b, k, h, m, r = len(dups), len(negs), len(hard), len(swapped[1]), len(near)
    v1, v2 = v[:b], v[b : 2 * b]  # (b, D) each
    sim = v1 @ v2.T  # (b, b): cosines, since rows are unit vectors
    w_dup = w_neg = None  # per-pair weights (b,), (k,) against the overlap shortcut
    if bias is not None and config.debias_overlap:
        w_dup = torch.from_numpy(bias.weights(dups.qid1, dups.qid2, True, config.debias_overlap))
        w_neg = torch.from_numpy(bias.weights(negs.qid1, negs.qid2, False, config.debias_overlap)) if k else None
    loss = weighted_mean(triplet_loss_hard(sim, config.margin, reduction="none"), w_dup)
    if config.symmetric:
        loss = (loss + weighted_mean(triplet_loss_hard(sim.T, config.margin, reduction="none"), w_dup)) / 2
    if config.nce_weight:
        rows, cols = sim, sim.T
        if h:
            vh = v[2 * b + 2 * k : 2 * b + 2 * k + h]  # (h, D)
            c = prepared.cluster_of
            same = torch.from_numpy(np.equal.outer([c[q] for q in dups.qid1.tolist()], [c[q] for q in hard.tolist()]))
            rows = torch.cat([rows, (v1 @ vh.T).masked_fill(same, float("-inf"))], 1)  # (b, b + h)
            cols = torch.cat([cols, (v2 @ vh.T).masked_fill(same, float("-inf"))], 1)
        nce = weighted_mean(in_batch_softmax_loss(rows, config.nce_scale, "none") + in_batch_softmax_loss(cols, config.nce_scale, "none"), w_dup) / 2
        loss = loss + config.nce_weight * nce
    if teacher is not None and config.kd_weight:
        t = teacher(dups.qid1) @ teacher(dups.qid2).T  # (b, b) teacher cosines
        only = config.kd_negatives_only
        kd = (distill_loss(sim, t, config.kd_scale, only) + distill_loss(sim.T, t.T, config.kd_scale, only)) / 2
        loss = loss + config.kd_weight * kd
    if k:
        n1, n2 = v[2 * b : 2 * b + k], v[2 * b + k : 2 * b + 2 * k]  # (k, D) each
        ranked = labeled_negative_loss(sim.diagonal(), (n1 * n2).sum(1), config.margin, "none", w_neg)  # (b,)
        loss = loss + config.neg_weight * weighted_mean(ranked, w_dup)
    if swapped[0]:
        original, altered = v1[swapped[0]], v[2 * b + 2 * k + h : 2 * b + 2 * k + h + m]  # (m, D) each
        loss = loss + config.sub_weight * labeled_negative_loss(sim.diagonal(), (original * altered).sum(1), config.margin)
    if r:
        # each anchor and its near miss should be as similar as the teacher says they are
        student = (v1[near_rows] * v[-r:]).sum(1)  # (r,)
        graded = (teacher(dups.qid1[near_rows]) * teacher.swap_vectors(near)).sum(1)
        if config.kd_swap_weight:
            # on the student's scale: distances 1 - cos stretched, so the two thresholds can line up
            target = 1 - config.kd_swap_stretch * (1 - graded)
            loss = loss + config.kd_swap_weight * torch.nn.functional.mse_loss(student, target)
        below = graded < config.kd_swap_below if config.kd_swap_below else None
        if below is not None and below.any():
            # those the teacher calls different join the labeled non-duplicates: below every duplicate of the batch
            loss = loss + config.neg_weight * labeled_negative_loss(sim.diagonal(), student[below], config.margin)
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
    start, start_network = None, None
    if ck is None and config.init:
        start = read_model_dir(config.init)  # before minutes of reading, so a broken one fails first
        start_network = load_network(start)
        config.model, config.text = ModelConfig(**start.model_config), start.text_config
        config.init_trained_words = start.manifest.get("vocabulary_extension", {}).get("trained_words")
    teacher = Teacher(config.teacher) if config.teacher and (config.kd_weight or config.kd_swaps) else None  # before minutes of reading
    if teacher is not None and config.kd_swaps and not len(teacher.swap_qids):
        raise InputError(f"teacher file {config.teacher} has no near misses; make it with `dupfinder teacher --swaps N` or `--neighbours K`")

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
    if config.cluster_pairs > 0:
        extra1, extra2 = cluster_positives(train, c, config.seed, config.cluster_pairs)
        log(f"{len(extra1):,} implied duplicate pairs added to {len(positives):,} labeled ones")
        positives = Pairs(np.r_[positives.qid1, extra1], np.r_[positives.qid2, extra2],
                          np.ones(len(positives) + len(extra1), dtype=np.int8), train.questions, train.report)
    batcher = PairBatcher(np.fromiter((c[q] for q in positives.qid1.tolist()), dtype=np.int64), config.batch_size, config.seed)
    steps_per_epoch = len(batcher.epoch(0))
    swapper = WordSwapper(prepared.vocab) if config.sub_negs else None
    hard_negatives = HardNegatives(train, c) if config.nce_hard and config.nce_weight else None
    bias = None
    if config.debias_overlap:
        is_word = np.array([i > 1 and any(ch.isalnum() for ch in t) for i, t in enumerate(prepared.vocab.itos)])
        bias = OverlapBias(train, prepared.tokens, is_word)
        log(f"{bias.table()}; labeled pairs weighted at strength {config.debias_overlap}")
    if teacher is not None:
        missing = teacher.missing(np.r_[positives.qid1, positives.qid2])
        if len(missing):
            raise InputError(
                f"teacher file {config.teacher} lacks vectors for {len(missing):,} training questions "
                f"(qid {missing[0]}, ...); make it from the same training file"
            )
        val_qids = np.unique(np.r_[prepared.val.qid1, prepared.val.qid2])
        if dropped := teacher.drop_swaps_from(val_qids):
            log(f"left out {dropped:,} teacher neighbours that are validation questions")
        teacher.tokenize_swaps(prepared.vocab, config.text, prepared.tokens)
        terms = [f"in-batch ranking at weight {config.kd_weight}"] if config.kd_weight else []
        if config.kd_swaps:
            stretch = f", distances stretched x{config.kd_swap_stretch}" if config.kd_swap_stretch != 1.0 else ""
            kinds = f"{int((teacher.swap_sources < 0).sum()):,} near misses and {int((teacher.swap_sources >= 0).sum()):,} neighbours"
            terms.append(f"up to {config.kd_swaps} of its {kinds} per batch at weight {config.kd_swap_weight}{stretch}")
        if config.kd_swaps and config.kd_swap_below:
            terms.append(f"those it scores below {config.kd_swap_below} as labeled non-duplicates")
        log(f"distilling from {config.teacher} ({teacher.vectors.shape[1]}-d vectors): {'; '.join(terms)}")
    schedule = Schedule(steps_per_epoch * config.epochs, config.warmup_steps, config.lr_floor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    state = TrainState()
    if ck is not None:
        network.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        state = ck["state"]
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
                swapped = ([], [])
                if swapper is not None:
                    firsts = [prepared.tokens[q] for q in dups.qid1[: config.sub_negs].tolist()]
                    swapped = swapper(firsts, np.random.default_rng([config.seed, state.epoch, 2, i]))
                hard = None
                if hard_negatives is not None:
                    hard = hard_negatives.sample([c[q] for q in dups.qid1.tolist()], np.random.default_rng([config.seed, state.epoch, 3, i]))
                loss = batch_loss(network, prepared, config, dups, train.subset(negs), swapped, hard, teacher,
                                  np.random.default_rng([config.seed, state.epoch, 4, i]), bias)
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
                "config": asdict(config),
                "data": prepared.stats,
                "seconds": round(state.seconds, 1),
                "history": state.history,
            },
            **init_record,
        },
    )
    return manifest


def split_warning(start: ModelFiles, config: TrainConfig, train_file: str | Path) -> str:
    """A note when the model to start from was trained on a file of the same name with another
    validation split: its training then saw questions that this run holds out to choose tau."""
    before = start.manifest.get("training", {})
    old = before.get("config", {})
    if Path(str(before.get("file", ""))).name != Path(train_file).name:
        return ""
    if (old.get("seed"), old.get("val_fraction")) == (config.seed, config.val_fraction):
        return "; same validation split"
    return (f"; warning: it was trained on {Path(train_file).name} with --seed {old.get('seed')} and --val-fraction "
            f"{old.get('val_fraction')}, so this run's validation split holds questions it trained on and tau may be too low")


def summarize(metrics: dict) -> dict:
    keep = ("pairs", "threshold", "accuracy", "precision", "recall", "f1", "roc_auc")
    return {k: round(metrics[k], 4) if isinstance(metrics[k], float) else metrics[k] for k in keep}
