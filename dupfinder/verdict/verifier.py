"""The interaction verifier: a small RE2-style network that reads the two questions' tokens side by
side (each word attends to the other question's words), run in numpy on the pairs the pair head is
unsure of. Stored beside the encoder as verifier.npz; the manifest's "verdict" entry names it with
its sha256, the head-probability band it runs in, and the stacking weights that combine its logit
with the head's.

Words: the encoder's vocabulary and its word embedding (not stored again); a word outside the
vocabulary gets an embedding of its own by a hash of its spelling, so two different unknown words
never look alike, and every word carries a flag saying whether it occurs in the other question.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dupfinder.errors import ModelError
from dupfinder.model.fast import pad_ids
from dupfinder.text import UNK_ID, tokenize
from dupfinder.verdict.rewording import one_word_apart

VERIFIER_FILE = "verifier.npz"
VERIFIER_FORMAT = 2  # 2: may hold "delta"; a file without it is written as format 1, which older readers take
ARRAYS = ("hashed", "enc1_w", "enc1_b", "enc2_w", "enc2_b", "align_w", "align_b", "fuse_w", "fuse_b",
          "pred1_w", "pred1_b", "pred2_w", "pred2_b")
OPTIONAL = ("delta",)  # (N, E) trained offsets to the embeddings of vocabulary ids 2 .. N-1 (rows 0 and 1 unused)
_NEG = np.float32(-1e9)
THREADS = 1  # threads that score chunks of a large batch at once (dedup, evaluate): set_threads


def head_logit(p_head) -> np.ndarray:
    """The head's probability as a logit, clipped to 1e-6 .. 1 - 1e-6: the scale the stack weighs."""
    p = np.clip(np.asarray(p_head, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def stored_keys(present) -> tuple[str, ...]:
    """The arrays a network's file holds: every one of ARRAYS, and those of OPTIONAL in `present`."""
    return ARRAYS + tuple(k for k in OPTIONAL if k in present)


def fill_later(h: np.ndarray, logits: np.ndarray, k: int, givens: Sequence) -> None:
    """Members k, k + 1, ...'s logits (columns of `logits`, in place) from the head's logit `h` and the
    earlier members': givens[j - 1] is member j's least-squares fit on the calibration pairs."""
    for j in range(k, logits.shape[1]):
        given = np.asarray(givens[j - 1], np.float64)
        logits[:, j] = given[0] * h + logits[:, :j] @ given[1:-1] + given[-1]


def set_threads(threads: int) -> None:
    """Score a large batch's chunks on this many threads at once."""
    global THREADS
    THREADS = max(1, int(threads))


def token_ids(text: str, vocab, text_config, n_hash: int) -> np.ndarray:
    """(L,) int64: vocabulary ids, a word outside the vocabulary as len(vocab) + a hash of its spelling."""
    return tokens_ids(tokenize(text, text_config), vocab, n_hash)


def tokens_ids(tokens: Sequence[str], vocab, n_hash: int) -> np.ndarray:
    """`token_ids` of a question's tokens (no tokens read as one unknown word)."""
    stoi, n_vocab, out = vocab.stoi, len(vocab), []
    for t in tokens or ["<unk>"]:
        i = stoi.get(t, UNK_ID)
        out.append(i if i > UNK_ID else n_vocab + zlib.crc32(t.encode()) % n_hash)
    return np.asarray(out, np.int64)


def _conv3(x: np.ndarray, w: np.ndarray, b: np.ndarray, token: np.ndarray) -> np.ndarray:
    """A width-3 convolution along packed questions, then ReLU: x (P, c) holds the questions' token
    rows one after another, a zero row before, between and after them (so each token's outer
    neighbour is zero, the convolution's padding); `w` is (3c, h), rows ordered (offset, channel).
    Returns (P, h) with the zero rows kept zero (`token`: (P, 1) float32, 1 on token rows)."""
    out = np.zeros((len(x), w.shape[1]), np.float32)
    out[1:-1] = np.concatenate([x[:-2], x[1:-1], x[2:]], axis=1) @ w
    out[1:-1] += b
    return np.maximum(out, 0, out=out) * token


ROWS_ON_ONE_THREAD = 4096  # padded token rows (about 250 pairs) up to which a batch's products run on the calling thread
_BLAS_LIBS = None  # threadpoolctl's controllers of numpy's BLAS libraries, found on first use (about 1 ms)


@contextlib.contextmanager
def _one_blas_thread():
    """A block in which numpy's BLAS runs on the calling thread only (about 2 us to enter and leave).
    OpenBLAS sends a product of m * n * k >= 524,288 to its threads, and a query's products are
    just past that: on a busy 2-core machine a query's 4 pairs cost 17.7 ms of CPU on two threads
    against about 1 on one; products cut into row blocks under that bound cost 40-50% more than
    one product on one thread (100 x 384 x 128: 133 against 89 us)."""
    global _BLAS_LIBS
    if _BLAS_LIBS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_LIBS = ThreadpoolController().select(user_api="blas").lib_controllers
    before = [lib.get_num_threads() for lib in _BLAS_LIBS]
    for lib in _BLAS_LIBS:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(_BLAS_LIBS, before):
            lib.set_num_threads(n)


def _softmax(e: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(e - e.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@dataclass
class Verifier:
    """Weights (numpy float32) of one network or more (`extra`: further members trained the same
    way, whose logits the stack also weighs), the encoder's word embedding, and how a pair's scores
    combine."""

    arrays: dict[str, np.ndarray]
    embed: np.ndarray  # (V, E) the encoder's word embedding
    vocab: object
    text_config: object
    band: tuple[float, float]  # the verifier runs where lo <= head probability <= hi
    stack: tuple[float, ...]  # logit = a * head logit + b1 * member 1's logit + ... + bm * member m's + c
    fill: tuple[float, ...] = (0.0, 0.0)  # outside the band member k's logit is taken as fill[2k] + fill[2k + 1] * head logit
    extra: tuple[dict[str, np.ndarray], ...] = ()
    # per extra member k: (lo, hi, given): it runs where the stacked probability with it filled in,
    # as given[0] * head logit + given[1..k] . earlier members' logits + given[-1], is in [lo, hi]
    steps: tuple[tuple[float, float, tuple[float, ...]], ...] = ()

    def __post_init__(self):
        # [h, a, h - a, h * a] @ W as [h, a, h * a] @ [W0 + W2; W1 - W2; W3]: three quarters of the product
        self._fuses = []
        for arrays in self.members:
            w, c = arrays["fuse_w"], arrays["fuse_w"].shape[0] // 4
            self._fuses.append(np.concatenate([w[:c] + w[2 * c : 3 * c], w[c : 2 * c] - w[2 * c : 3 * c], w[3 * c :]]))

    @property
    def members(self) -> tuple[dict[str, np.ndarray], ...]:
        return (self.arrays, *self.extra)

    @property
    def n_hash(self) -> int:
        return len(self.arrays["hashed"])

    def ids(self, text: str) -> np.ndarray:
        return token_ids(text, self.vocab, self.text_config, self.n_hash)

    def ids_of_tokens(self, tokens: Sequence[str]) -> np.ndarray:
        return tokens_ids(tokens, self.vocab, self.n_hash)

    def _embed(self, ids: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
        n_fixed = len(self.embed)
        out = self.embed[np.minimum(ids, n_fixed - 1)]  # (n, L, E)
        delta = w.get("delta")
        if delta is not None:
            tuned = (ids > 1) & (ids < len(delta))
            out[tuned] += delta[ids[tuned]]
        hashed = ids >= n_fixed
        if hashed.any():
            out[hashed] = w["hashed"][ids[hashed] - n_fixed]
        return out

    def logits(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray], chunk: int = 256, member: int | None = None) -> np.ndarray:
        """(n,) float32 logits of the token-id pairs (a[i], b[i]), (n, m) with m members (or (n,) of
        one `member`); symmetric in the two. Many chunks run on `THREADS` threads at once, each
        product on its own thread (see `set_threads`)."""
        ks = range(len(self.members)) if member is None else [member]
        m = len(ks)
        out = np.zeros((len(a), m) if m > 1 else len(a), np.float32)
        order = np.argsort([max(len(x), len(y)) for x, y in zip(a, b)], kind="stable")  # little padding
        chunks = [order[s : s + chunk] for s in range(0, len(order), chunk)]

        def run(idx: np.ndarray) -> None:
            pa, pb = pad_ids([a[i] for i in idx])[0], pad_ids([b[i] for i in idx])[0]
            if 2 * len(idx) * max(pa.shape[1], pb.shape[1]) <= ROWS_ON_ONE_THREAD:  # a search's pairs
                with _one_blas_thread():
                    got = [self._logits(pa, pb, k) for k in ks]
            else:  # a large chunk (dedup, evaluate): each product on every thread, or on its worker's one
                got = [self._logits(pa, pb, k) for k in ks]
            out[idx] = np.stack(got, axis=1) if m > 1 else got[0]

        if THREADS > 1 and len(chunks) >= 2 * THREADS:
            from concurrent.futures import ThreadPoolExecutor

            from threadpoolctl import threadpool_limits

            # one OpenBLAS thread per worker: two workers whose products each took both cores ran no faster than one
            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(run, chunks))
        else:
            for idx in chunks:
                run(idx)
        return out

    def _logits(self, a: np.ndarray, b: np.ndarray, k: int = 0) -> np.ndarray:
        """Logits (n,) of padded id pairs a (n, La), b (n, Lb). The two sides share every weight, so
        their 2n questions run as one batch; the token-wise layers read them packed (`_conv3`), with
        no padding rows, and only the alignment reads them padded."""
        w = self.members[k]
        n, length = len(a), max(a.shape[1], b.shape[1])
        ids = np.zeros((2 * n, length), np.int64)
        ids[:n, : a.shape[1]], ids[n:, : b.shape[1]] = a, b
        mask = ids > 0  # every question has a token; padding follows them
        ma, mb = mask[:n], mask[n:]
        same = (ids[:n, :, None] == ids[n:, None, :]) & ma[:, :, None] & mb[:, None, :]  # (n, L, L)
        keep = np.flatnonzero(mask)  # the tokens, in the padded batch's flat order
        lengths = mask.sum(1)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # first token of each question among the tokens
        rows = np.arange(len(keep)) + 1 + np.repeat(np.arange(2 * n), lengths)  # each token's packed row
        packed = np.zeros(len(keep) + 2 * n + 1, np.int64)  # token ids, 0 at the zero rows
        packed[rows] = ids.ravel()[keep]
        token = (packed > 0).astype(np.float32)[:, None]  # (P, 1)
        flag = np.zeros((len(packed), 1), np.float32)  # the word occurs in the other question
        flag[rows, 0] = np.concatenate([same.any(2), same.any(1)]).ravel()[keep]
        x = np.concatenate([self._embed(packed, w) * token, flag], axis=1)  # (P, c)
        h = _conv3(_conv3(x, w["enc1_w"], w["enc1_b"], token), w["enc2_w"], w["enc2_b"], token)
        h = np.concatenate([x, h], axis=1)[rows]  # (T, c + h) the tokens only
        f = np.maximum(h @ w["align_w"] + w["align_b"], 0)
        hp = np.zeros((2 * n * length, h.shape[1]), np.float32)  # padded again for the alignment
        fp = np.zeros((2 * n * length, f.shape[1]), np.float32)
        hp[keep], fp[keep] = h, f
        hp, fp = hp.reshape(2 * n, length, -1), fp.reshape(2 * n, length, -1)
        e = fp[:n] @ fp[n:].transpose(0, 2, 1)  # (n, L, L)
        aligned = np.concatenate([_softmax(np.where(mb[:, None, :], e, _NEG), 2) @ hp[n:],  # (2n, L, c + h)
                                  _softmax(np.where(ma[:, :, None], e, _NEG), 1).transpose(0, 2, 1) @ hp[:n]])
        aligned = aligned.reshape(2 * n * length, -1)[keep]  # (T, c + h)
        g = np.maximum(np.concatenate([h, aligned, h * aligned], axis=1) @ self._fuses[k] + w["fuse_b"], 0)
        v = np.maximum.reduceat(g, starts, axis=0)  # (2n, h) max over each question's tokens
        va, vb = v[:n], v[n:]
        z = np.maximum(np.concatenate([va + vb, np.abs(va - vb), va * vb], axis=1) @ w["pred1_w"] + w["pred1_b"], 0)
        return (z @ w["pred2_w"] + w["pred2_b"])[:, 0]

    def combine(self, p_head: np.ndarray, verifier_logits: np.ndarray | None = None) -> np.ndarray:
        """The stacked probability of pairs from the head's probability and the members' logits ((n,)
        or (n, m), as `logits` gives them); with no logits, each member's expected logit given the
        head's (a monotone map of the head's probability onto the stacked scale, for the pairs
        outside the band)."""
        h = head_logit(p_head)
        fill = np.asarray(self.fill, np.float64).reshape(-1, 2)  # (m, 2)
        if verifier_logits is None:
            logits = fill[:, 0] + h[:, None] * fill[:, 1]  # (n, m)
        else:
            logits = np.asarray(verifier_logits, np.float64).reshape(len(h), -1)
        a, *b, c = self.stack
        return 1.0 / (1.0 + np.exp(-(a * h + logits @ np.asarray(b, np.float64) + c)))

    def decide(self, p_head: np.ndarray, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        """The stacked probability of pairs in the band: the first network reads every pair; each
        further one only where the score with its logit filled in from the earlier ones lies in its
        step's band (without steps, every network reads every pair)."""
        if len(self.members) == 1 or not self.steps:
            return self.combine(p_head, self.logits(a, b))
        h = head_logit(p_head)
        logits = np.zeros((len(h), len(self.members)))
        logits[:, 0] = self.logits(a, b, member=0)
        givens = [given for _, _, given in self.steps]
        for k, (lo, hi, _) in enumerate(self.steps, start=1):
            fill_later(h, logits, k, givens)
            score = self.combine(p_head, logits)
            run = np.flatnonzero((score >= lo) & (score <= hi))
            if len(run):
                logits[run, k] = self.logits([a[i] for i in run.tolist()], [b[i] for i in run.tolist()], member=k)
        return self.combine(p_head, logits)

    def in_band(self, p_head: np.ndarray) -> np.ndarray:
        lo, hi = self.band
        return (p_head >= lo) & (p_head <= hi)


def torch_arrays(state: dict) -> dict[str, np.ndarray]:
    """verifier.npz's arrays from the training network's state dict (research/train code's names)."""
    def conv(wt):  # torch (h, c, 3) -> (3c, h), rows (offset, channel)
        wt = wt.detach().numpy()
        return np.ascontiguousarray(wt.transpose(2, 1, 0).reshape(-1, wt.shape[0]))

    lin = lambda k: np.ascontiguousarray(state[k].detach().numpy().T)  # noqa: E731
    vec = lambda k: state[k].detach().numpy().copy()  # noqa: E731
    tuned = {"delta": vec("delta.weight")} if "delta.weight" in state else {}
    return {**tuned, "hashed": state["hashed.weight"].detach().numpy().copy(),
            "enc1_w": conv(state["enc1.weight"]), "enc1_b": vec("enc1.bias"),
            "enc2_w": conv(state["enc2.weight"]), "enc2_b": vec("enc2.bias"),
            "align_w": lin("align.weight"), "align_b": vec("align.bias"),
            "fuse_w": lin("fuse.weight"), "fuse_b": vec("fuse.bias"),
            "pred1_w": lin("pred.0.weight"), "pred1_b": vec("pred.0.bias"),
            "pred2_w": lin("pred.2.weight"), "pred2_b": vec("pred.2.bias")}


def stored(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The weights as verifier.npz keeps them (float16, half the bytes), back in float32: what the
    stack and the band must be fitted on."""
    return {k: np.asarray(arrays[k], np.float16).astype(np.float32) for k in stored_keys(arrays)}


def verifier_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, format=np.int32(VERIFIER_FORMAT if "delta" in arrays else 1),
             **{k: np.asarray(arrays[k], np.float16) for k in stored_keys(arrays)})
    return buf.getvalue()


def _read_arrays(model_dir: Path, entry: dict, embed: np.ndarray) -> dict[str, np.ndarray]:
    """One member's weights from the file `entry` names, checked against its sha256 and the encoder's
    embedding: a missing, stale or unreadable file is a ModelError naming it."""
    from dupfinder.model.files import sha256_hex

    path = Path(model_dir) / str(entry.get("file", VERIFIER_FILE))
    try:
        data = path.read_bytes()
    except OSError:
        raise ModelError(f"{path} is missing (the manifest names it); restore the model") from None
    if sha256_hex(data) != entry.get("sha256"):
        raise ModelError(f"{path} does not match {Path(model_dir) / 'manifest.json'} (stale or damaged); restore the model")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            fmt = int(npz["format"])
            if fmt > VERIFIER_FORMAT:
                raise ModelError(f"{path} was written by a newer dupfinder; upgrade dupfinder")
            arrays = {k: npz[k].astype(np.float32) for k in stored_keys(npz.files)}
        if arrays["enc1_w"].shape[0] != 3 * (embed.shape[1] + 1) or arrays["hashed"].shape[1] != embed.shape[1]:
            raise ValueError("shapes do not match the encoder's word embedding")
        if "delta" in arrays and (arrays["delta"].shape[1] != embed.shape[1] or len(arrays["delta"]) > len(embed)):
            raise ValueError("the embedding offsets do not match the encoder's word embedding")
    except ModelError:
        raise
    except Exception as e:  # zipfile and numpy raise many kinds for a damaged file
        raise ModelError(f"{path} is corrupt ({type(e).__name__}: {e}); restore the model") from None
    return arrays


def load_verifier(model_dir: Path, record: dict | None, vocab, text_config, embed: np.ndarray) -> Verifier | None:
    """The verifier the verdict entry names (its file, and `extra` members' files), or None when it
    names none. A named but missing, stale or unreadable file is a ModelError naming it."""
    if not record:
        return None
    members = [_read_arrays(model_dir, record, embed)] + [_read_arrays(model_dir, e, embed) for e in record.get("extra") or []]
    try:
        lo, hi = (float(x) for x in record["band"])
        stack = tuple(float(x) for x in record["stack"])
        fill = tuple(float(x) for x in record["fill"])
        if len(stack) != len(members) + 2 or len(fill) != 2 * len(members):
            raise ValueError(f"{len(members)} networks need {len(members) + 2} stack and {2 * len(members)} fill weights")
        steps = tuple((float(e["band"][0]), float(e["band"][1]), tuple(float(x) for x in e["given"]))
                      for e in record.get("extra") or [] if "band" in e)
        if steps and (len(steps) != len(members) - 1 or any(len(g) != k + 2 for k, (_, _, g) in enumerate(steps, start=1))):
            raise ValueError("each further network needs a band and k + 2 'given' weights")
    except Exception as e:
        raise ModelError(f"{Path(model_dir) / 'manifest.json'} has a damaged verdict.verifier entry ({e}); restore the model") from None
    return Verifier(members[0], np.asarray(embed, np.float32), vocab, text_config, (lo, hi), stack, fill, tuple(members[1:]), steps)


class _Reader:
    """The head's question reader, keeping each question's text for the verifier (which reads its
    tokens only for the pairs in its band)."""

    def __init__(self, featurizer):
        self._featurizer = featurizer

    def question(self, text: str):
        q = self._featurizer.question(text)
        q.text = text
        return q

    def questions(self, texts: Sequence[str]) -> list:
        out = self._featurizer.questions(texts)
        for q, text in zip(out, texts):
            q.text = text
        return out

    def __getattr__(self, name):
        return getattr(self._featurizer, name)


class Cascade:
    """The pair head, with the verifier deciding the pairs whose head probability falls in its band
    and the pairs one word apart: there the score is the stacked probability of both, elsewhere the
    head's. Used wherever a `PairHead` is (the same `featurizer`, `score`, `threshold` and
    `cosine_floor`)."""

    kind = "head+verifier"

    def __init__(self, head, verifier: Verifier, threshold: float):
        self.head, self.verifier, self.threshold = head, verifier, float(threshold)
        self.featurizer = _Reader(head.featurizer)
        self.cosine_floor = head.cosine_floor
        self.calls = 0  # pairs the verifier has read (benchmarks)

    def score(self, u: np.ndarray, v: np.ndarray, a: Sequence, b: Sequence) -> np.ndarray:
        p = self.head.score(u, v, a, b)
        band = self.verifier.in_band(p)
        for i in np.flatnonzero(~band).tolist():  # the head reads overlap: one changed word is the verifier's to judge
            band[i] = one_word_apart(a[i], b[i])
        band = np.flatnonzero(band)
        out = self.verifier.combine(p)
        if len(band):
            self.calls += len(band)
            out[band] = self.verifier.decide(p[band], [self._tokens(a[i]) for i in band.tolist()], [self._tokens(b[i]) for i in band.tolist()])
        return out


    def _tokens(self, q) -> np.ndarray:
        """The verifier's token ids of a question the head read, from the tokens it read (the same
        tokenizer and text settings): one reading of each question per search."""
        tokens = getattr(q, "tokens", None)
        if tokens is None:
            tokens = q.tokens = self.verifier.ids_of_tokens(q.text_tokens) if q.text_tokens else self.verifier.ids(q.text)
        return tokens


def load_encoder_verifier(encoder, head) -> Cascade | None:
    """The model's cascade over `head` when its verdict entry names a verifier, else None."""
    record = encoder.manifest["verdict"].get("verifier")
    if not record:
        return None
    numpy_path = getattr(encoder, "_numpy", None)
    if numpy_path is not None:
        embed = numpy_path.embed
    else:
        from dupfinder.model.files import load_numpy_weights

        embed = load_numpy_weights(encoder.files)["embed.weight"]
    verifier = load_verifier(encoder.path, record, encoder.vocab, encoder.text_config, embed)
    return Cascade(head, verifier, head.threshold)
