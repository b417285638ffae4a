"""Training the interaction verifier of a model directory that has a pair head: the encoder's own
training split (less the pairs the head keeps to choose its threshold) trains it; those held-out
pairs and the encoder's validation split fit how its logit combines with the head's, the head-
probability band it runs in, and the threshold of the combined score. Writes verifier.npz and the
verdict entry's "verifier" record; the encoder and the head are not touched."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dupfinder.atomic import write_atomic
from dupfinder.io import load_pairs
from dupfinder.model.encoder import load_model
from dupfinder.model.files import load_numpy_weights, read_json, sha256_hex
from dupfinder.train.head import encoder_split, made_up_word
from dupfinder.text import tokenize
from dupfinder.model.fast import pad_ids
from dupfinder.verdict.verifier import VERIFIER_FILE, fill_later, head_logit, stored, token_ids, torch_arrays, verifier_bytes


@dataclass
class VerifierConfig:
    hidden: int = 128
    epochs: int = 6
    batch_size: int = 256
    lr: float = 1e-3  # Adam, cosine decay to 5%
    dropout: float = 0.1
    n_hash: int = 20000  # embeddings for words outside the vocabulary, by a hash of the spelling
    members: int = 2  # networks the stack weighs (1 or 2): the first reads the encoder's embedding as it is,
    tuned_words: int = 30000  # the second also trains offsets to the embeddings of this many most frequent words
    unknown_pairs: int = 20000  # constructed pairs: one rare word replaced by two different made-up words
    wordnet_pairs: int = 0  # WordNet one-word pairs from training questions (train/wordnet_pairs.py; needs nltk and WordNet's files)
    band_miss: float = 0.002  # the band leaves at most this share of calibration verdicts to the head that the stack would decide otherwise
    calibration_holdout: float = 0.05  # as the head's: the same pairs
    seed: int = 0
    threads: int = 2


def network(embed: np.ndarray, n_hash: int, hidden: int, dropout: float, tuned_words: int = 0):
    """The torch network whose weights verdict/verifier.py runs in numpy (the same names and shapes)."""
    import torch
    from torch import nn

    class VerifierNet(nn.Module):
        def __init__(self):
            super().__init__()
            d = embed.shape[1]
            self.n_fixed = embed.shape[0]
            self.fixed = nn.Embedding.from_pretrained(torch.from_numpy(embed.astype(np.float32)), freeze=True, padding_idx=0)
            self.hashed = nn.Embedding(n_hash, d)
            nn.init.normal_(self.hashed.weight, std=float(embed[2:1000].std()))
            self.n_tuned = min(tuned_words, self.n_fixed)
            if self.n_tuned:  # offsets to the frequent words' embeddings (ids 0 and 1, padding and <unk>, stay)
                self.delta = nn.Embedding(self.n_tuned, d)
                nn.init.zeros_(self.delta.weight)
            self.enc1 = nn.Conv1d(d + 1, hidden, 3, padding=1)
            self.enc2 = nn.Conv1d(hidden, hidden, 3, padding=1)
            d_a = d + 1 + hidden
            self.align = nn.Linear(d_a, hidden)
            self.fuse = nn.Linear(4 * d_a, hidden)
            self.pred = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            self.drop = nn.Dropout(dropout)

        def embed(self, ids):
            fixed = self.fixed(ids.clamp(max=self.n_fixed - 1))
            if self.n_tuned:
                tuned = ((ids > 1) & (ids < self.n_tuned)).unsqueeze(-1)
                fixed = fixed + self.delta(ids.clamp(max=self.n_tuned - 1)) * tuned
            return torch.where((ids >= self.n_fixed).unsqueeze(-1), self.hashed((ids - self.n_fixed).clamp(min=0)), fixed)

        def side(self, x, mask):
            m = mask.unsqueeze(1).float()  # (B, 1, L)
            h = torch.relu(self.enc1(self.drop(x).transpose(1, 2) * m)) * m
            h = torch.relu(self.enc2(self.drop(h))) * m
            return torch.cat([x, h.transpose(1, 2)], 2)  # (B, L, d_a)

        def fused(self, h, aligned, mask):
            g = torch.relu(self.fuse(self.drop(torch.cat([h, aligned, h - aligned, h * aligned], 2))))
            return g.masked_fill(~mask.unsqueeze(2), -1e9).max(1).values

        def forward(self, a, b):
            ma, mb = a > 0, b > 0
            same = (a.unsqueeze(2) == b.unsqueeze(1)) & ma.unsqueeze(2) & mb.unsqueeze(1)  # (B, La, Lb)
            xa = torch.cat([self.embed(a), same.any(2, keepdim=True).float()], 2)
            xb = torch.cat([self.embed(b), same.any(1).unsqueeze(2).float()], 2)
            ha, hb = self.side(xa, ma), self.side(xb, mb)
            fa, fb = torch.relu(self.align(self.drop(ha))), torch.relu(self.align(self.drop(hb)))
            e = fa @ fb.transpose(1, 2)  # (B, La, Lb)
            a2 = torch.softmax(e.masked_fill(~mb.unsqueeze(1), -1e9), 2) @ hb
            b2 = torch.softmax(e.masked_fill(~ma.unsqueeze(2), -1e9), 1).transpose(1, 2) @ ha
            va, vb = self.fused(ha, a2, ma), self.fused(hb, b2, mb)
            return self.pred(torch.cat([va + vb, (va - vb).abs(), va * vb], 1))[:, 0]

    return VerifierNet()


def length_batches(lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar lengths (little padding): sorted within windows of 50 batches."""
    order = rng.permutation(len(lengths))
    out = []
    for s in range(0, len(order), size * 50):
        window = order[s : s + size * 50]
        window = window[np.argsort(lengths[window], kind="stable")]
        out += [window[i : i + size] for i in range(0, len(window), size)]
    rng.shuffle(out)
    return out


def unknown_word_texts(texts: list[str], vocab, text_config, n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Question pairs with one rare word replaced by two different made-up words (not duplicates)."""
    out = []
    for t in rng.permutation(len(texts)).tolist():
        tokens = tokenize(texts[t], text_config)
        rare = sorted({w for w in tokens if w.isalpha() and len(w) > 3 and vocab.stoi.get(w, 1 << 30) > 3000})
        if not rare:
            continue
        w, x, y = str(rng.choice(rare)), made_up_word(rng), made_up_word(rng)
        out.append((" ".join(x if u == w else u for u in tokens), " ".join(y if u == w else u for u in tokens)))
        if len(out) >= n:
            break
    return out


def fit_stack(head_p: np.ndarray, logits: np.ndarray, y: np.ndarray, steps: int = 100, l2: float = 1e-3) -> tuple[float, ...]:
    """Logistic regression of the label on (head logit, each member's logit; `logits` (n,) or (n, m)):
    damped Newton steps on the mean log loss (a step that does not lower it is halved), m + 2 weights."""
    x = np.c_[head_logit(head_p), np.asarray(logits).reshape(len(head_p), -1), np.ones(len(head_p))]  # (n, m + 2)
    reg = l2 * np.r_[np.ones(x.shape[1] - 1), 0.0]

    def loss(w):
        z = x @ w
        return float(np.mean(np.logaddexp(0, z) - y * z) + 0.5 * (reg * w * w).sum())

    w = np.r_[np.full(x.shape[1] - 1, 0.5), 0.0]
    current = loss(w)
    for _ in range(steps):
        q = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (q - y) / len(y) + reg * w
        hess = (x * (q * (1 - q))[:, None]).T @ x / len(y) + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-4 and loss(w - t * step) > current:
            t /= 2
        w = w - t * step
        new = loss(w)
        if current - new < 1e-10:
            break
        current = new
    return tuple(float(x) for x in w)


def fit_fill(head_p: np.ndarray, logits: np.ndarray) -> tuple[float, ...]:
    """Least squares of each member's logit on the head's: its expected value outside the band, as
    (intercept, slope) per member."""
    h = head_logit(head_p)
    out = []
    for column in np.asarray(logits).reshape(len(h), -1).T:
        slope, intercept = np.polyfit(h, column, 1)
        out += [float(intercept), float(slope)]
    return tuple(out)


def choose_band(head_p: np.ndarray, filled: np.ndarray, stacked: np.ndarray, threshold: float, miss: float) -> tuple[float, float]:
    """(lo, hi) of the head's probability: outside it, the verdict without the verifier (`filled`)
    and with it (`stacked`) differ on at most `miss` of the pairs."""
    order = np.argsort(head_p, kind="stable")
    p, differ = head_p[order], (filled >= threshold)[order] != (stacked >= threshold)[order]
    budget = int(miss * len(p))
    below = np.cumsum(differ)  # disagreements among the pairs up to each one, from the bottom
    above = np.cumsum(differ[::-1])[::-1]  # ... from the top
    k_lo = int(np.searchsorted(below, budget // 2, side="right"))  # first pair the band must hold
    k_hi = len(p) - 1 - int(np.searchsorted(above[::-1], budget - budget // 2, side="right"))
    lo = float(p[min(k_lo, len(p) - 1)])
    hi = float(p[max(k_hi, 0)])
    return min(lo, hi), max(lo, hi)


def calibration_split(pairs, encoder, holdout: float):
    """(training pairs, calibration pairs): the encoder's training split less the share the head kept
    to choose its threshold; calibration is the encoder's validation split plus that share."""
    tr_idx, va_idx = encoder_split(pairs, encoder.manifest)
    hold = np.random.default_rng(2).random(len(tr_idx)) < holdout  # the same pairs as the head's (train/head.py)
    return pairs.subset(tr_idx[~hold]), pairs.subset(np.r_[va_idx, tr_idx[hold]]), len(va_idx)


def train_verifier(model_dir: str | Path, train_file: str | Path, config: VerifierConfig | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Train the verifier of a model directory with a pair head (`members` networks, each from the same
    seed and data order) and install it there (`install`)."""
    import torch

    config = config or VerifierConfig()
    t0 = time.time()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    encoder = load_model(model_dir, backend="numpy")
    embed = load_numpy_weights(encoder.files)["embed.weight"].astype(np.float32)
    pairs = load_pairs(train_file)
    train, cal, n_val = calibration_split(pairs, encoder, config.calibration_holdout)
    ids = {q: token_ids(t, encoder.vocab, encoder.text_config, config.n_hash) for q, t in pairs.questions.items()}
    A, B = [ids[q] for q in train.qid1.tolist()], [ids[q] for q in train.qid2.tolist()]
    y = train.label.astype(np.float32)
    if config.unknown_pairs:
        extra = unknown_word_texts([pairs.questions[q] for q in np.unique(train.qid1).tolist()], encoder.vocab,
                                   encoder.text_config, config.unknown_pairs, rng)
        A += [token_ids(a, encoder.vocab, encoder.text_config, config.n_hash) for a, _ in extra]
        B += [token_ids(b, encoder.vocab, encoder.text_config, config.n_hash) for _, b in extra]
        y = np.r_[y, np.zeros(len(extra), np.float32)]
    if config.wordnet_pairs:
        import os

        from dupfinder.train.wordnet_pairs import wordnet_pairs

        trained = int(encoder.manifest.get("vocabulary_extension", {}).get("trained_words", len(encoder.vocab)))
        triples = wordnet_pairs((pairs.questions[q] for q in np.unique(np.r_[train.qid1, train.qid2]).tolist()),
                                lambda x: tokenize(x, encoder.text_config), encoder.vocab, trained, config.wordnet_pairs, embed,
                                seed=config.seed, data_dir=os.environ.get("NLTK_DATA"))
        A += [token_ids(a, encoder.vocab, encoder.text_config, config.n_hash) for a, _, _ in triples]
        B += [token_ids(b, encoder.vocab, encoder.text_config, config.n_hash) for _, b, _ in triples]
        y = np.r_[y, np.array([label for _, _, label in triples], np.float32)]
    val_A, val_B = [ids[q] for q in cal.qid1[:n_val].tolist()], [ids[q] for q in cal.qid2[:n_val].tolist()]
    log(f"verifier: {len(y):,} training pairs ({len(y) - len(train):,} constructed), {len(cal):,} calibration pairs")
    members, trainings = [], []
    state = rng.bit_generator.state  # each member starts from here: as if trained alone
    for tuned in [0, config.tuned_words][: config.members]:
        rng.bit_generator.state = state
        torch.manual_seed(config.seed)
        t = time.time()
        net, history = train_member(network(embed, config.n_hash, config.hidden, config.dropout, tuned), A, B, y, config, rng,
                                    (val_A, val_B, cal.label[:n_val]), log)
        members.append(torch_arrays(net.state_dict()))
        trainings.append({"file": Path(train_file).name, "pairs": int(len(y)), "tuned_words": int(tuned),
                          "seconds": round(time.time() - (t0 if not trainings else t), 1), "history": history})
    return install(model_dir, members, pairs, config, trainings, log)


def train_member(net, A: list, B: list, y: np.ndarray, config: VerifierConfig, rng: np.random.Generator, validation: tuple,
                 log: Callable[[str], None]) -> tuple:
    """One network trained on the pairs (A[i], B[i], y[i]): Adam with cosine decay, batches of similar
    length in a random order; validation ROC-AUC logged after each epoch. (net, history)."""
    import torch

    from dupfinder.evaluation.metrics import roc_auc
    from dupfinder.train.loop import Schedule, classifier_step

    val_A, val_B, val_y = validation
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
    lengths = np.array([max(len(a), len(b)) for a, b in zip(A, B)])
    steps = config.epochs * ((len(y) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, Schedule(steps, 0, 0.05))  # cosine decay to 5%, no warm-up
    yt = torch.from_numpy(y)
    history = []
    for epoch in range(1, config.epochs + 1):
        t = time.time()
        total = 0.0
        for idx in length_batches(lengths, config.batch_size, rng):
            a, b = torch.from_numpy(pad_ids([A[i] for i in idx])[0]), torch.from_numpy(pad_ids([B[i] for i in idx])[0])
            if rng.random() < 0.5:  # the network is symmetric; both orders anyway
                a, b = b, a
            total += classifier_step(opt, sched, net(a, b), yt[idx])
        net.eval()
        with torch.no_grad():
            val_p = np.concatenate([net(torch.from_numpy(pad_ids(val_A[s : s + 1024])[0]), torch.from_numpy(pad_ids(val_B[s : s + 1024])[0])).numpy()
                                    for s in range(0, len(val_y), 1024)])
        net.train()
        auc = roc_auc(val_p, val_y)
        history.append({"epoch": epoch, "loss": round(total / len(y), 5), "val_roc_auc": round(auc, 5), "seconds": round(time.time() - t, 1)})
        log(f"verifier epoch {epoch}: loss {total / len(y):.4f}, validation ROC-AUC {auc:.4f} ({time.time() - t:.0f} s)")
    return net, history


def fit_steps(verifier, head_p: np.ndarray, logits: np.ndarray, stacked: np.ndarray, threshold: float,
              miss: float) -> tuple[np.ndarray, tuple]:
    """Each further network's step: its logit's least-squares fit on the head's and the earlier
    networks' logits, and the band of the score with it filled in where reading it would change at
    most `miss` of the calibration verdicts. Returns the logits as the cascade reads them (filled in
    where a step's network did not run) and the steps, (lo, hi, given) per further network."""
    h = head_logit(head_p)
    m = logits.shape[1]
    givens = [tuple(float(x) for x in np.linalg.lstsq(np.c_[h, logits[:, :k], np.ones(len(h))], logits[:, k], rcond=None)[0])
              for k in range(1, m)]
    read = np.zeros_like(logits)
    read[:, 0] = logits[:, 0]
    steps = []
    for k in range(1, m):
        fill_later(h, read, k, givens)
        score = verifier.combine(head_p, read)
        lo, hi = choose_band(score, score, stacked, threshold, miss)
        run = (score >= lo) & (score <= hi)
        read[run, k] = logits[run, k]
        steps.append((lo, hi, givens[k - 1]))
    return read, tuple(steps)


def member_file(k: int) -> str:
    """The file of the verifier's k-th network (0: verifier.npz)."""
    return VERIFIER_FILE if k == 0 else VERIFIER_FILE.replace(".npz", f"-{k + 1}.npz")


def install(model_dir: str | Path, members: list[dict], pairs, config: VerifierConfig, trainings: list[dict],
            log: Callable[[str], None] = print) -> dict:
    """Fit the stack, band and threshold of trained verifier networks (one or more members) on the
    calibration pairs, then write their files (verifier.npz, verifier-2.npz, ...) and the verdict
    entry's "verifier" record (the commit point), atomically."""
    from dupfinder.evaluation.calibrate import advise
    from dupfinder.evaluation.metrics import roc_auc
    from dupfinder.verdict.head import load_encoder_head
    from dupfinder.verdict.verifier import Verifier

    t0 = time.time()
    members = [stored(arrays) for arrays in members]  # fitted on the float16 weights the files keep
    encoder = load_model(model_dir, backend="numpy")
    head = load_encoder_head(encoder)  # the head alone, also where the model has a verifier already
    if head is None:
        raise ValueError(f"{model_dir} has no pair head; train one first with `dupfinder train-verdict`")
    old = encoder.manifest["verdict"].get("verifier") or {}
    head.threshold = float(old.get("head_threshold", head.threshold))
    _, cal, _ = calibration_split(pairs, encoder, config.calibration_holdout)
    m = len(members)
    verifier = Verifier(members[0], encoder._numpy.embed, encoder.vocab, encoder.text_config, (0.0, 1.0), (0.0,) * (m + 2),
                        (0.0,) * (2 * m), tuple(members[1:]))
    logits = verifier.logits([verifier.ids(t) for t in cal.texts(1)], [verifier.ids(t) for t in cal.texts(2)]).astype(np.float64)
    qids = np.unique(np.r_[cal.qid1, cal.qid2])
    v = encoder.encode([cal.questions[q] for q in qids.tolist()])
    head_p = head.score(v[np.searchsorted(qids, cal.qid1)], v[np.searchsorted(qids, cal.qid2)],
                        head.featurizer.questions(cal.texts(1)), head.featurizer.questions(cal.texts(2)))
    y = cal.label.astype(np.float64)
    stack = fit_stack(head_p, logits, y)
    verifier.stack, verifier.fill = stack, fit_fill(head_p, logits)
    stacked = verifier.combine(head_p, logits)
    best = advise(stacked, y, balanced=True)["best_accuracy"]
    threshold = float(best["threshold"])
    lo, hi = choose_band(head_p, verifier.combine(head_p), stacked, threshold, config.band_miss)
    band = (head_p >= lo) & (head_p <= hi)
    read, steps = fit_steps(verifier, head_p, logits, stacked, threshold, config.band_miss) if m > 1 else (logits, ())
    final = np.where(band, verifier.combine(head_p, read), verifier.combine(head_p))
    files = []
    for k, arrays in enumerate(members):
        data = verifier_bytes(arrays)
        write_atomic(Path(model_dir) / member_file(k), data)
        files.append({"file": member_file(k), "sha256": sha256_hex(data)})
    extra = [{**f, "band": [lo_k, hi_k], "given": list(given), "training": t}
             for f, (lo_k, hi_k, given), t in zip(files[1:], steps, trainings[1:])]
    record = {**files[0], **({"extra": extra} if extra else {}), "band": [lo, hi], "stack": list(stack), "fill": list(verifier.fill),
              "head_threshold": head.threshold,
              "calibration": {"pairs": int(len(y)), "in_band": round(float(band.mean()), 4), "roc_auc": round(roc_auc(final, y), 5),
                              "accuracy": round(float(((final >= threshold) == (y == 1)).mean()), 5),
                              "balanced_accuracy": round(float(best["balanced_accuracy"]), 5)},
              "config": asdict(config), "training": trainings[0]}
    path = Path(model_dir) / "manifest.json"
    manifest = read_json(path)
    manifest["verdict"]["verifier"] = record
    manifest["verdict"]["threshold"] = threshold  # the combined score's; the head's own stays in the record
    write_atomic(path, json.dumps(manifest, indent=2).encode())
    weights = " + ".join(f"{w:.3f} x {'head' if i == 0 else f'network {i}'} logit" for i, w in enumerate(stack[:-1]))
    log(f"verifier: stack {weights} + {stack[-1]:.3f}, threshold {threshold:.4f}, band [{lo:.4f}, {hi:.4f}] "
        f"({band.mean():.1%} of calibration pairs); wrote {', '.join(f['file'] for f in files)} in {time.time() - t0:.0f} s")
    return record
