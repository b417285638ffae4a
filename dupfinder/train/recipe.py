"""Training settings: TrainConfig, every setting with its default, and recipes, TOML files that set
any of them. A setting comes from TrainConfig's default, then the recipe, then the command line.
A recipe's top level trains the encoder; its sections [teacher], [vocabulary], [verdict],
[verifier] and [subwords] set the stages `dupfinder build-model` runs around it (Stages). No torch here, so a
recipe is checked before torch loads.
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dupfinder.errors import InputError
from dupfinder.model.config import ModelConfig
from dupfinder.model.fast import POOLINGS
from dupfinder.text import TextConfig

if TYPE_CHECKING:
    from dupfinder.train.head import HeadConfig
    from dupfinder.train.verifier import VerifierConfig


@dataclass
class TrainConfig:
    seed: int = 0  # seeds the split, the batch order and the weights
    epochs: int = 8  # passes over the duplicate pairs (about 4 min each on one core for the default model)
    batch_size: int = 256  # duplicate pairs per batch; the other 255 are each anchor's negatives
    neg_pairs: int = 128  # labeled non-duplicate pairs added to each batch (0 = course recipe only)
    neg_weight: float = 1.0  # weight of the labeled-negative ranking term
    margin: float = 0.25  # alpha of the triplet loss
    nce_weight: float = 0.25  # weight of an added in-batch softmax (InfoNCE) term over S and S^T (0 = off)
    nce_scale: float = 20.0  # its inverse temperature
    nce_hard: bool = False  # add to it, per anchor, a question labeled not a duplicate of its cluster
    teacher: str | None = None  # teacher file (.npz from `dupfinder teacher --neighbours K`) for kd_swaps
    kd_swaps: int = 0  # anchors per batch whose cosine to a teacher neighbour learns the teacher's (0 = off)
    kd_swap_weight: float = 1.0  # weight of that term
    kd_swap_stretch: float = 1.0  # the student's target distance 1 - cos is the teacher's times this
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


@dataclass
class TeacherStage:
    neighbours: int = 3  # each duplicate-pair question's K nearest questions by the teacher (`dupfinder teacher --neighbours`)
    all_questions: bool = False  # encode every question, not only those of duplicate pairs


@dataclass
class VocabularyStage:
    words: int = 80_000  # GloVe words added after training, most frequent first (`dupfinder extend-vocab --words`)


@dataclass
class SubwordsStage:
    buckets: int = 65536  # rows of the hashed character n-gram table (`dupfinder train-subwords --buckets`)
    epochs: int = 10  # passes over the vocabulary
    seed: int = 0
    threads: int = 1  # torch threads


@dataclass
class Stages:
    """The stages around the encoder that a recipe's sections ask for; None: the stage does not run."""

    teacher: TeacherStage | None = None  # all-MiniLM-L6-v2's neighbours, learned from through kd_swaps
    vocabulary: VocabularyStage | None = None  # extend-vocab on the trained encoder
    verdict: HeadConfig | None = None  # the pair head (train-verdict)
    verifier: VerifierConfig | None = None  # the interaction verifier over the head (train-verifier)
    subwords: SubwordsStage | None = None  # vectors for unknown words from their spelling (train-subwords)


def stage_classes() -> dict[str, type]:
    """Each recipe section's config class, in the order the stages run (head and verifier load here,
    not at import, so that `dupfinder` starts without them)."""
    from dupfinder.train.head import HeadConfig
    from dupfinder.train.verifier import VerifierConfig

    return {"teacher": TeacherStage, "vocabulary": VocabularyStage, "verdict": HeadConfig, "verifier": VerifierConfig,
            "subwords": SubwordsStage}


# ModelConfig's own default is the course's encoder (unidirectional, mean pooling), which library
# callers get; `dupfinder train` starts from this one unless a recipe says otherwise
TRAIN_DEFAULTS = {"model": {"bidirectional": True, "pooling": "max"}}
# set by training itself, never by a recipe
DERIVED = {"init_trained_words", "model.vocab_size"}
# settings that name a file or folder: in a recipe, relative to the recipe's folder
PATHS = {"teacher", "init"}
# a recipe's sections for the stages around the encoder, in the order they run
STAGE_SECTIONS = ("teacher", "vocabulary", "verdict", "verifier", "subwords")

_ANY = (lambda v: True, "")
LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: v >= 1, "at least 1"),
    "batch_size": (lambda v: v >= 2, "at least 2 (the other pairs of a batch are the negatives)"),
    "neg_pairs": (lambda v: v >= 0, "0 or more"),
    "neg_weight": (lambda v: v >= 0, "0 or more"),
    "margin": (lambda v: 0 <= v <= 2, "between 0 and 2"),
    "nce_weight": (lambda v: v >= 0, "0 or more"),
    "nce_scale": (lambda v: v > 0, "above 0"),
    "kd_swaps": (lambda v: v >= 0, "0 or more"),
    "kd_swap_weight": (lambda v: v >= 0, "0 or more"),
    "kd_swap_stretch": (lambda v: v > 0, "above 0"),
    "lr": (lambda v: v > 0, "above 0"),
    "warmup_steps": (lambda v: v >= 0, "0 or more"),
    "lr_floor": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    "weight_decay": (lambda v: v >= 0, "0 or more"),
    "grad_clip": (lambda v: v > 0, "above 0"),
    "val_fraction": (lambda v: 0 < v <= 0.5, "above 0 and at most 0.5"),
    "min_freq": (lambda v: v >= 1, "at least 1"),
    "max_vocab": (lambda v: v >= 3, "at least 3"),
    "threads": (lambda v: v >= 1, "at least 1"),
    "checkpoint_every": (lambda v: v >= 1, "at least 1"),
    "model.d_embed": (lambda v: v >= 1, "at least 1"),
    "model.d_model": (lambda v: v >= 1, "at least 1"),
    "model.n_layers": (lambda v: v >= 1, "at least 1"),
    "model.d_out": (lambda v: v >= 0, "0 (no projection) or more"),
    "model.dropout": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "model.pooling": (lambda v: v in POOLINGS, f"one of {', '.join(POOLINGS)}"),
    "text.max_len": (lambda v: v >= 1, "at least 1"),
    "teacher.neighbours": (lambda v: v >= 1, "at least 1"),
    "vocabulary.words": (lambda v: v >= 1, "at least 1"),
    "verdict.hidden": (lambda v: v >= 1, "at least 1"),
    "verdict.hidden2": (lambda v: v >= 1, "at least 1"),
    "verdict.epochs": (lambda v: v >= 1, "at least 1"),
    "verdict.batch_size": (lambda v: v >= 1, "at least 1"),
    "verdict.lr": (lambda v: v > 0, "above 0"),
    "verdict.lr_floor": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    "verdict.weight_decay": (lambda v: v >= 0, "0 or more"),
    "verdict.input_dropout": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "verdict.unknown_pairs": (lambda v: v >= 0, "0 or more"),
    "verdict.wordnet_pairs": (lambda v: v >= 0, "0 or more"),
    "verdict.calibration_holdout": (lambda v: 0 < v <= 0.5, "above 0 and at most 0.5"),
    "verdict.threads": (lambda v: v >= 1, "at least 1"),
    "verifier.hidden": (lambda v: v >= 1, "at least 1"),
    "verifier.epochs": (lambda v: v >= 1, "at least 1"),
    "verifier.batch_size": (lambda v: v >= 1, "at least 1"),
    "verifier.lr": (lambda v: v > 0, "above 0"),
    "verifier.dropout": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "verifier.n_hash": (lambda v: v >= 1, "at least 1"),
    "verifier.unknown_pairs": (lambda v: v >= 0, "0 or more"),
    "verifier.members": (lambda v: v in (1, 2), "1 or 2"),
    "verifier.tuned_words": (lambda v: v >= 0, "0 or more"),
    "verifier.band_miss": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "verifier.calibration_holdout": (lambda v: 0 < v <= 0.5, "above 0 and at most 0.5"),
    "verifier.threads": (lambda v: v >= 1, "at least 1"),
    "subwords.buckets": (lambda v: v >= 1, "at least 1"),
    "subwords.epochs": (lambda v: v >= 1, "at least 1"),
    "subwords.threads": (lambda v: v >= 1, "at least 1"),
}


def settings() -> dict[str, type]:
    """Every encoder setting a recipe may hold, as dotted names ("epochs", "model.pooling") -> its type."""
    out = {}
    for cls, prefix in ((TrainConfig, ""), (ModelConfig, "model."), (TextConfig, "text.")):
        out.update(_typed_fields(cls, prefix))
    return out


def stage_settings(section: str) -> dict[str, type]:
    """Every setting of a stage's section, as dotted names ("verdict.epochs") -> its type."""
    return _typed_fields(stage_classes()[section], section + ".")


def _typed_fields(cls: type, prefix: str) -> dict[str, type]:
    out = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # `str | None`: a recipe can only give the str
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if kind in (bool, int, float, str) and prefix + f.name not in DERIVED:
            out[prefix + f.name] = kind
    return out


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file's encoder settings as dotted names -> checked values; paths made relative to its
    folder. Its stage sections are checked too (`read_stages` returns them).

    Raises InputError (one line) for a missing or unreadable file, bad TOML, an unknown setting or
    a value of the wrong type or range.
    """
    path = Path(path)
    data = _load(path)
    _stages(data, path)
    return _encoder_settings(data, path)


def read_stages(path: str | Path) -> Stages:
    """The stages a recipe's sections ask for, each section checked as the encoder's settings are."""
    path = Path(path)
    data = _load(path)
    _encoder_settings(data, path)
    return _stages(data, path)


def _load(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"recipe {path} does not exist; see recipes/ for examples") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"recipe {path} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read recipe {path} ({type(e).__name__}); give a TOML file") from None


def _is_section(key: str, value: Any) -> bool:
    # `teacher = "t.npz"` names a teacher file (an encoder setting); `[teacher]` makes one
    return key in STAGE_SECTIONS and (isinstance(value, dict) or key != "teacher")


def _encoder_settings(data: dict[str, Any], path: Path) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if _is_section(key, value):
            continue
        if key in ("model", "text") and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    known = settings()
    for name, value in flat.items():
        if name not in known:
            raise InputError(f"recipe {path}: unknown setting {name!r}; valid settings are: {', '.join(known)}; "
                             f"and the sections {', '.join(f'[{s}]' for s in STAGE_SECTIONS)}")
        flat[name] = check_value(name, value, known[name], f"recipe {path}")
        if name in PATHS:
            flat[name] = str(path.parent / flat[name])
    return flat


def _stages(data: dict[str, Any], path: Path) -> Stages:
    where = f"recipe {path}"
    stages = Stages()
    for section, cls in stage_classes().items():
        if section not in data or not _is_section(section, data[section]):
            continue
        table = data[section]
        if not isinstance(table, dict):
            raise InputError(f"{where}: {section} must be a section ([{section}] with its settings below), not {table!r}")
        known = stage_settings(section)
        values = {}
        for key, value in table.items():
            name = f"{section}.{key}"
            if name not in known:
                raise InputError(f"{where}: unknown setting {name!r}; valid settings are: {', '.join(known)}")
            values[key] = check_value(name, value, known[name], where)
        setattr(stages, section, cls(**values))
    if stages.verifier is not None and stages.verdict is None:
        raise InputError(f"{where} has [verifier] but no [verdict]: the verifier works over the pair head; add a [verdict] section")
    if stages.verifier is not None and stages.verifier.calibration_holdout != stages.verdict.calibration_holdout:
        raise InputError(f"{where}: verifier.calibration_holdout ({stages.verifier.calibration_holdout}) must equal "
                         f"verdict.calibration_holdout ({stages.verdict.calibration_holdout}): both choose their threshold on the same pairs")
    return stages


def check_value(name: str, value: Any, kind: type, where: str) -> Any:
    """`value` as `kind` (an int is a float too), within its limits; else an InputError."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        raise InputError(f"{where}: {name} must be {names[kind]}, not {value!r}")
    ok, limit = LIMITS.get(name, _ANY)
    if not ok(value):
        raise InputError(f"{where}: {name} must be {limit}, not {value!r}")
    return value


def resolve(recipe: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The training configuration: TrainConfig's defaults (with `dupfinder train`'s encoder), then
    the recipe's settings, then `overrides` (dotted names; None means not given), checked."""
    chosen = {f"model.{k}": v for k, v in TRAIN_DEFAULTS["model"].items()}
    if recipe is not None:
        chosen.update(read_recipe(recipe))
    known = settings()
    for name, value in (overrides or {}).items():
        if value is not None:
            chosen[name] = check_value(name, value, known[name], "option")
    config = TrainConfig()
    for name, value in chosen.items():
        part, _, key = name.rpartition(".")
        setattr(getattr(config, part) if part else config, key, value)
    check(config, recipe)
    return config


def check(config: TrainConfig, recipe: str | Path | None = None) -> None:
    """Settings that only make sense together."""
    where = f"recipe {recipe}" if recipe else "the settings"
    if config.kd_swaps and not config.teacher:
        raise InputError(f"{where} set kd_swaps, which needs a teacher file: pass --teacher FILE, made by "
                         f"`dupfinder teacher TRAIN_FILE --out FILE --neighbours 3`")
    if config.teacher and not config.kd_swaps:
        raise InputError(f"a teacher file is given, but kd_swaps is 0 in {where} and nothing else uses it: "
                         f"set kd_swaps in the recipe (see recipes/shipped.toml) or drop --teacher")
    if config.kd_swap_stretch != 1.0 and not config.kd_swaps:
        raise InputError(f"{where} set kd_swap_stretch, which acts only with kd_swaps; set kd_swaps too")


def resolve_stages(recipe: str | Path, teacher: str | None = None) -> tuple[TrainConfig, Stages]:
    """Every stage of a recipe, for `dupfinder build-model`: the encoder's configuration and the
    stages around it, checked together. `teacher` is the teacher file the encoder learns from (the
    [teacher] stage's output, or a file given instead of that stage)."""
    stages = read_stages(recipe)
    where = f"recipe {recipe}"
    encoder = read_recipe(recipe)
    kd_swaps = encoder.get("kd_swaps", TrainConfig.kd_swaps)
    teacher = teacher or encoder.get("teacher")
    if stages.teacher is not None and not kd_swaps:
        raise InputError(f"{where} has a [teacher] section, but kd_swaps is 0 and nothing else uses the teacher: "
                         f"set kd_swaps or drop [teacher]")
    if kd_swaps and teacher is None:
        raise InputError(f"{where} sets kd_swaps, which needs a teacher: add a [teacher] section (see recipes/shipped.toml) "
                         f"or pass --teacher FILE")
    return resolve(recipe, {"teacher": teacher}), stages
