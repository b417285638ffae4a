"""The engine: one encoder, one store and the verdict rule, and what users do with them (add, remove,
query, similarity, screen, dedup, evaluate, calibrate, info). The CLI and the HTTP service are thin
clients of it. It owns which model a store is read with and the demo index at the default place.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from dupfinder.errors import IndexStoreError, ModelError
from dupfinder.store import open_store
from dupfinder.store.base import AddReport, Question, RemoveReport, plan_add
from dupfinder.verdict import Verdict

if TYPE_CHECKING:  # torch, faiss and numba load only where used: a cold `dupfinder query` stays fast
    from dupfinder.dedup import DedupResult
    from dupfinder.io import PairColumns, Pairs
    from dupfinder.model.encoder import Encoder

PACKAGE = Path(__file__).parent
DEMO_CORPUS = PACKAGE / "demo" / "questions.csv.gz"
from dupfinder.model.files import DEFAULT_MODEL_DIR  # noqa: E402  (torch-free)
ProgressFactory = Callable[[int, str], object]  # (total, label) -> object with update(n) and close()


def default_location() -> str:
    """$DUPFINDER_INDEX, else $DUPFINDER_HOME/indexes/default, else ./indexes/default."""
    if os.environ.get("DUPFINDER_INDEX"):
        return os.environ["DUPFINDER_INDEX"]
    if os.environ.get("DUPFINDER_HOME"):
        return str(Path(os.environ["DUPFINDER_HOME"]) / "indexes" / "default")
    return str(Path("indexes") / "default")


@dataclass
class Hit:
    """One neighbour of a query: the user's id (or the store's id when it has none), its text, the
    cosine (never above 1.0), and the verdict; `verdict_score` is the pair head's probability when a
    head decides (None under the cosine rule)."""

    id: str | int
    text: str
    score: float
    duplicate: bool
    verdict_score: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["verdict_score"] is None:  # the cosine rule decided: the shape it always had
            del d["verdict_score"]
        return d


def model_record(encoder: "Encoder") -> dict:
    """What a store records of the model that fills it."""
    path = Path(encoder.path).resolve()
    return {
        "path": str(path),
        "fingerprint": encoder.fingerprint,
        "threshold": float(encoder.threshold),  # at build time, for the record; verdicts read the model's
        "default": path == DEFAULT_MODEL_DIR.resolve(),  # then found again in whatever install opens the store
    }


def check_model(built: dict, encoder: "Encoder", where: str) -> None:
    """Refuse to read or fill a store with a model other than the one that built it."""
    if encoder.fingerprint == built["fingerprint"]:
        return
    if built.get("default") and Path(encoder.path).resolve() == DEFAULT_MODEL_DIR.resolve():
        raise IndexStoreError(
            f"{where} was built with an earlier shipped model ({built['fingerprint']}); this dupfinder ships "
            f"{encoder.fingerprint}: rebuild it with `dupfinder index SOURCE... --index NEW_DIR` "
            f"(`dupfinder info --index {where}` lists its sources), or query it with the old model's directory as --model"
        )
    raise IndexStoreError(
        f"{where} was built with model {built['fingerprint']} ({built['path']}), not {encoder.fingerprint} "
        f"({encoder.path}); query it with its own model, or build a new index with --index OTHER_DIR"
    )


def load_encoder(model_dir: str | Path | None = None) -> "Encoder":
    from dupfinder.model.encoder import load_model

    return load_model(model_dir)


def store_model(store, model_dir: str | Path | None = None) -> "Encoder":
    """The model that built `store` (or `model_dir`, which must be that same model)."""
    built = store.model
    recorded = None if built.get("default") else built["path"]
    try:
        encoder = load_encoder(model_dir if model_dir is not None else recorded)
    except ModelError as e:
        if model_dir is not None:
            raise
        raise IndexStoreError(
            f"cannot load the model that built {store.location} ({e}); pass --model with that model, or rebuild the index"
        ) from None
    check_model(built, encoder, store.location)
    return encoder


def read_questions(paths: Sequence[str], text_column: str | None = None, id_column: str | None = None,
                   log: Callable[[str], None] | None = None) -> list[Question]:
    """Every file read first (pairs, CSV/TSV, plain text, .gz, `-`), so a bad one fails before a store is touched."""
    from dupfinder.io import load_questions

    out: list[Question] = []
    for path in paths:
        qs = load_questions(path, text_column=text_column, id_column=id_column)
        if log is not None:
            log(qs.report.summary())
        source = "<stdin>" if str(path) == "-" else str(path)
        out += [Question(i, t, source) for i, t in zip(qs.ids, qs.texts)]
    return out


def set_threads(threads: int | None) -> None:
    """CPU threads for torch (applied when it loads) and FAISS; None leaves their defaults."""
    if threads:
        from dupfinder.model.encoder import set_torch_threads

        set_torch_threads(threads)
        import faiss

        faiss.omp_set_num_threads(threads)
        from dupfinder.verdict.verifier import set_threads as set_verifier_threads

        set_verifier_threads(threads)


class Engine:
    """An encoder, an optional store, and the verdict rule they are judged by.

    >>> engine = Engine.open("indexes/support")
    >>> engine.query(["How do I reset my password?"], k=3)[0][0]
    Hit(id='q-12', text='How can I change my password?', score=0.91, duplicate=True)
    >>> Engine(load_encoder()).similarity("How old are you?", "What is your age?")
    {'score': 0.616, 'threshold': 0.594, 'duplicate': True}
    """

    def __init__(self, encoder: "Encoder", store=None, threshold: float | None = None, verdict: str = "auto"):
        self.encoder = encoder
        self.store = store
        # the single place that decides which rule is in force: the model's pair head where it has
        # one ("auto"), else (or with verdict="cosine") the cosine against the calibrated tau; a
        # caller's threshold replaces the calibrated one of the rule in force
        self.verdict = Verdict.for_encoder(encoder, threshold, verdict)

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, index: str | Path | None = None, model: str | Path | None = None, threshold: float | None = None,
             log: Callable[[str], None] | None = None, progress: ProgressFactory | None = None, verdict: str = "auto") -> "Engine":
        """An engine over an existing store (queried with the model that built it). With no `index`
        and no $DUPFINDER_INDEX, the default place; the demo corpus is indexed there first when it
        holds no index, or rebuilt when an earlier shipped model built it."""
        location = str(index) if index is not None else default_location()
        at_demo_home = index is None and not os.environ.get("DUPFINDER_INDEX")
        if at_demo_home:
            _ensure_demo(Path(location), model, log or (lambda _: None), progress)
        store = open_store(location)
        try:
            return cls(store_model(store, model), store, threshold, verdict)
        except BaseException:
            store.close()
            raise

    @classmethod
    def for_writing(cls, index: str | Path | None = None, model: str | Path | None = None, kind: str | None = None) -> "Engine":
        """An engine that adds to a store, creating it (of `kind`, flat by default) when absent. An
        existing store keeps its own model; `model` must then be that model."""
        location = str(index) if index is not None else default_location()
        store = open_store(location, create={"kind": kind})
        try:
            if store.exists:
                encoder = store_model(store, model)
            else:
                encoder = load_encoder(model)
                store.set_model(record=model_record(encoder), dim=encoder.dim)
            return cls(encoder, store)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ the verdict

    @property
    def threshold(self) -> float:
        return self.verdict.threshold

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit vectors (n, d) float32; inner product is cosine."""
        return self.encoder.encode(list(texts), progress=progress)

    def similarity(self, question1: str, question2: str) -> dict:
        """{"score", "threshold", "duplicate", "cosine", "verdict"} of one pair: `score` is what the
        threshold applies to (the head's probability, or the cosine under the cosine rule)."""
        v = self.encode([question1, question2])  # (2, d)
        return self._results(*self.verdict.decide(v[:1], v[1:], [question1], [question2]))[0]

    def _results(self, scores: np.ndarray, duplicate: np.ndarray, cosines: np.ndarray) -> list[dict]:
        kind = self.verdict.kind
        return [{"score": float(s), "threshold": self.threshold, "duplicate": bool(d), "cosine": float(c), "verdict": kind}
                for s, d, c in zip(scores.tolist(), duplicate.tolist(), cosines.tolist())]

    def similarities(self, pairs: Iterable[tuple[str, str]], chunk: int = 4096) -> Iterator[dict]:
        """`similarity` of many pairs, each distinct question encoded once per chunk."""
        batch: list[tuple[str, str]] = []
        for pair in pairs:
            batch.append(pair)
            if len(batch) == chunk:
                yield from self._similarity_batch(batch)
                batch = []
        if batch:
            yield from self._similarity_batch(batch)

    def _similarity_batch(self, batch: list[tuple[str, str]]) -> list[dict]:
        texts = list(dict.fromkeys(t for pair in batch for t in pair))
        row = {t: i for i, t in enumerate(texts)}
        v = self.encode(texts)  # (u, d)
        first, second = [a for a, _ in batch], [b for _, b in batch]
        return self._results(*self.verdict.decide(v[[row[a] for a in first]], v[[row[b] for b in second]], first, second))

    def pair_scores(self, pairs: "Pairs") -> np.ndarray:
        """The verdict's score of each labeled pair (each distinct question encoded once)."""
        qids = np.unique(np.r_[pairs.qid1, pairs.qid2])
        v = self.encode([pairs.questions[q] for q in qids.tolist()])  # (u, d)
        a, b = np.searchsorted(qids, pairs.qid1), np.searchsorted(qids, pairs.qid2)
        return self.verdict.scores(v[a], v[b], pairs.texts(1), pairs.texts(2))[0]

    # ------------------------------------------------------------ the store

    def _need_store(self):
        if self.store is None:
            raise IndexStoreError("this engine has no index; open one with Engine.open(INDEX)")
        return self.store

    def add(self, questions: Sequence[Question], progress: ProgressFactory | None = None, upsert: bool = False) -> AddReport:
        """Encode and store the questions not stored yet. Same user id and text, or same normalized
        text: skipped and counted; empty ones too. A stored user id with other text: replaced with
        `upsert`, else an error before anything is encoded or written."""
        store = self._need_store()
        before = AddReport()
        fresh = plan_add(questions, *store.known(questions), before, upsert, store.location).fresh
        texts = [q.text for _, q, _ in fresh]
        bar = progress(len(texts), "encoding") if progress is not None and texts else None
        vectors = self.encode(texts, progress=bar.update if bar is not None else None) if texts else np.zeros((0, store.dim), np.float32)
        if bar is not None:
            bar.close()
        report = store.add([q for _, q, _ in fresh], vectors, upsert=upsert)
        report.already_indexed += before.already_indexed
        report.empty += before.empty
        return report

    def remove(self, ids: Sequence[str]) -> RemoveReport:
        return self._need_store().remove([str(i) for i in ids])

    def query(self, texts: Sequence[str], k: int = 5) -> list[list[Hit]]:
        """The k nearest stored questions of each text, best first, with their verdicts."""
        if k < 1:
            raise ValueError("k must be at least 1")
        store = self._need_store()
        queries = self.encode(texts)  # (n, d)
        if callable(getattr(store, "search_records", None)):  # a database store: hits and records in one round trip
            scores, ids, records = store.search_records(queries, k)  # (n, k), (n, k), id -> record
        else:
            scores, ids = store.search(queries, k)  # (n, k), (n, k)
            records = store.get(ids.ravel().tolist())
        if self.verdict.head is None:
            duplicate, p = self.verdict(scores), None
        else:  # the head judges each (query, hit) pair from both vectors and both texts
            found = [(r, j) for r in range(len(texts)) for j, i in enumerate(ids[r].tolist()) if i in records]
            p = np.full(scores.shape, np.nan)
            if found:
                rows, cols = np.array(found).T
                hit_ids = ids[rows, cols]
                hits = hit_vectors(store, hit_ids, records, self.encode)  # (m, d)
                p[rows, cols] = self.verdict.scores(queries[rows], hits, [texts[r] for r in rows.tolist()],
                                                    [records[i].text for i in hit_ids.tolist()])[0]
            duplicate = self.verdict(np.nan_to_num(p, nan=-1.0))
            p = p.tolist()
        out: list[list[Hit]] = []
        for r, (row_scores, row_ids, row_dup) in enumerate(zip(scores.tolist(), ids.tolist(), duplicate.tolist())):
            out.append([Hit(records[i].display_id, records[i].text, min(s, 1.0), d, None if p is None else p[r][j])
                        for j, (s, i, d) in enumerate(zip(row_scores, row_ids, row_dup)) if i in records])
        return out

    def query_many(self, texts: Iterable[str], k: int = 5, chunk: int = 4096) -> Iterator[list[Hit]]:
        """`query` over any number of texts, in chunks, so memory stays bounded."""
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) == chunk:
                yield from self.query(batch, k)
                batch = []
        if batch:
            yield from self.query(batch, k)

    def info(self) -> dict:
        store = self._need_store()
        built = store.model
        return store.info() | {
            "model": built["path"], "model_fingerprint": built["fingerprint"], "threshold": self.threshold,
            "threshold_source": self.verdict.source, "verdict": self.verdict.kind,
        } | ({"verdict_note": self.verdict.note} if self.verdict.note else {})

    # ------------------------------------------------------------ batches

    def dedup(self, texts: Sequence[str], ok: np.ndarray, k: int = 16, linkage: str = "complete", against: bool = False,
              progress: ProgressFactory | None = None) -> tuple["DedupResult", dict[int, str] | None]:
        """Clusters of duplicates within `texts` (rows where `ok`; `linkage` as in `dedup.LINKAGES`),
        and with `against` each row's duplicate in the store: the result and the ids to show for
        the store's matches."""
        from dupfinder.dedup import DedupConfig, dedup, match_labels

        store = self._need_store() if against else None
        config = DedupConfig(threshold=self.threshold, linkage=linkage, k=k)
        judge = None if self.verdict.head is None else self.verdict
        result = dedup(self.encoder, texts, ok, config, against=store, progress_factory=progress, verdict=judge)
        labels = match_labels(store, result.match) if store is not None else None
        return result, labels

    def screen(self, texts: Sequence[str], k: int = 5) -> list[dict]:
        """Each question's duplicates already in the store (up to k) and within the batch; an empty
        question has none."""
        ok = np.fromiter((bool(t.strip()) for t in texts), bool, len(texts))
        hits = self.query(texts, k) if self.store is not None else [[] for _ in texts]
        result, _ = self.dedup(texts, ok)
        out = []
        for i, row_hits in enumerate(hits):
            same = np.flatnonzero((result.cluster == result.cluster[i]) & (result.cluster >= 0))
            out.append({"in_index": [h for h in row_hits if h.duplicate] if ok[i] else [], "in_batch": [int(j) for j in same if j != i]})
        return out

    def evaluate(self, pairs: "Pairs", unseen_from: str | None = None, columns: "PairColumns | None" = None) -> dict:
        """Accuracy, precision, recall, F1, ROC-AUC and the confusion of labeled pairs at the threshold in force."""
        from dupfinder.evaluation.pairs import evaluate_pairs

        result = evaluate_pairs(self.encoder, pairs, self.threshold, unseen_from, columns, scores=self.pair_scores(pairs))
        result["verdict"] = self.verdict.kind
        return result

    def calibrate(self, pairs: "Pairs", target_precision: float = 0.90, balanced: bool = True) -> dict:
        """Threshold advice from labeled pairs, with the metrics at the threshold in force."""
        from dupfinder.evaluation.calibrate import calibrate_model

        result = calibrate_model(self.encoder, pairs, self.threshold, target_precision, balanced, scores=self.pair_scores(pairs))
        result["verdict"] = self.verdict.kind
        return result


def hit_vectors(store, ids: np.ndarray, records: dict, encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Stored vectors (m, d) of hits, from the store where it keeps them (`get_vectors(ids)`), else
    encoded again from their texts (same model, so the same vectors)."""
    getter = getattr(store, "get_vectors", None)
    if callable(getter):
        return np.asarray(getter(ids.tolist()), dtype=np.float32)
    return encode([records[i].text for i in ids.tolist()])


# ---------------------------------------------------------------- the demo index


def is_demo_source(source: str) -> bool:
    """A question from the demo corpus of some dupfinder install (the path differs between installs)."""
    return Path(source).parts[-3:] == DEMO_CORPUS.parts[-3:]


def _outdated_demo(directory: Path) -> bool:
    """True for an index that holds only the demo corpus and was built with an earlier shipped model."""
    from dupfinder.store.local import MANIFEST, LocalStore, read_manifest

    if not (directory / MANIFEST).is_file():
        return False
    try:
        built = read_manifest(directory)["model"]  # the manifest alone: this runs before every default-index query
        shipped = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text(encoding="utf-8"))["fingerprint"]
        if not built.get("default") or built["fingerprint"] == shipped:
            return False
        with LocalStore(directory) as store:
            sources = store.sources()
    except (IndexStoreError, OSError, ValueError, KeyError, TypeError):
        return False  # opening it again reports what is wrong
    return bool(sources) and all(is_demo_source(s) for s in sources)


def build_demo(location: str | Path, model: str | Path | None = None, progress: ProgressFactory | None = None) -> AddReport:
    """Index the demo corpus shipped with dupfinder (real Quora questions) at `location`."""
    with Engine.for_writing(location, model) as engine:
        return engine.add(read_questions([str(DEMO_CORPUS)]), progress)


def _ensure_demo(directory: Path, model, log: Callable[[str], None], progress: ProgressFactory | None) -> None:
    from dupfinder.store.local import MANIFEST, LocalStore

    if not (directory / MANIFEST).exists():
        log(f"no index at {directory} yet: building it from the demo corpus shipped with dupfinder")
        log(build_demo(directory, model, progress).summary(str(directory)))
    elif model is None and _outdated_demo(directory):
        log(f"{directory} holds the demo corpus indexed by an earlier shipped model: rebuilding it with this one")
        fresh = directory.with_name(directory.name + ".rebuilding")
        shutil.rmtree(fresh, ignore_errors=True)
        report = build_demo(fresh, None, progress)
        with LocalStore(directory) as old:
            old.replace_with(LocalStore(fresh))
        log(report.summary(str(directory)))
