"""Recipes: TOML training settings, checked, overridden by the command line; the shipped model's."""

import csv
import gzip
import hashlib
import json
import tomllib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.errors import InputError
from dupfinder.model.files import DEFAULT_MODEL_DIR
from dupfinder.train.recipe import STAGE_SECTIONS, TrainConfig, read_recipe, read_stages, resolve, settings, stage_settings

RECIPES = Path(__file__).parents[1] / "recipes"
SHIPPED = RECIPES / "shipped.toml"
QUORA = Path(__file__).parents[2] / "shared" / "data" / "quora"

# Settings the shipped model's training recorded that no longer exist: each measured worse than the
# recipe and its code was removed (git history keeps it). Each is at the value that turned it off, or
# (None) only mattered when another of them was on, so removing them does not change what the recipe trains.
REMOVED_OFF = {
    "sub_negs": 0,  # swapped-word negatives (--swap-negatives)
    "sub_weight": None,  # their weight
    "cluster_pairs": 0.0,  # implied duplicates a = c from a = b, b = c
    "kd_weight": 0.0,  # in-batch distillation from the teacher's ranking
    "kd_scale": None,  # its softmax temperature
    "kd_negatives_only": False,  # its variant that leaves the labeled duplicate out
    "kd_swap_below": 0.0,  # teacher-graded near misses as labeled non-duplicates
    "debias_overlap": 0.0,  # reweighting labeled pairs against the word-overlap shortcut
}
# Settings added after the shipped model was trained, for fine-tuning (--init); None means no
# starting model, which is how the shipped model was trained.
ADDED_SINCE = {"init": None, "init_trained_words": None}


def write(tmp_path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_recipe_is_exactly_the_shipped_models_training_configuration():
    recorded = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())["training"]
    config = asdict(resolve(SHIPPED, {"teacher": "teacher.npz"}))
    want = dict(recorded["config"])

    # The teacher file is data made by `dupfinder teacher`, given on the command line like the
    # training file (the recipe names how to make it). The manifest names it; its path on the
    # machine that trained was removed, and its checksum cannot be computed honestly now.
    assert config.pop("teacher") == "teacher.npz"
    assert want.pop("teacher") == {"name": "N3.npz", "sha256": None, "path_removed": True}
    # The vocabulary size is counted from the training file, not set by a recipe.
    assert config["model"].pop("vocab_size") == TrainConfig().model.vocab_size
    assert want["model"].pop("vocab_size") == recorded["data"]["vocab_size"] == 46955
    for name, value in REMOVED_OFF.items():
        got = want.pop(name)
        assert value is None or got == value, f"the shipped model was trained with {name} = {got}"
    for name, value in ADDED_SINCE.items():
        assert config.pop(name) == value and name not in want

    assert config.keys() == want.keys()
    for name in want:  # field by field, so a failure names the setting
        assert config[name] == want[name], name
    assert config["threads"] == 1  # the recipe keeps the thread count of the bit-identical re-run


def test_the_shipped_recipe_holds_the_later_stages_the_shipped_model_records():
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    stages = read_stages(SHIPPED)
    # the recorded teacher file is named N3.npz: 3 neighbours per question
    assert asdict(stages.teacher) == {"neighbours": 3, "all_questions": False}
    assert manifest["training"]["config"]["teacher"]["name"] == "N3.npz"
    extension = manifest["vocabulary_extension"]
    assert stages.vocabulary.words == extension["words_added"] == 80000
    assert extension["source"]["vocabulary"] == extension["trained_words"]  # extended once, from the trained encoder
    want = manifest["verdict"]["config"]
    got = asdict(stages.verdict)
    assert got.keys() == want.keys()
    for name in want:  # field by field, so a failure names the setting
        assert got[name] == want[name], f"verdict.{name}"
    if "verifier" in manifest["verdict"]:  # the recipe's [verifier] is held to the model once it ships one
        want = manifest["verdict"]["verifier"]["config"]
        got = asdict(stages.verifier)
        assert got.keys() == want.keys()
        for name in want:
            assert got[name] == want[name], f"verifier.{name}"
    table = manifest["subwords"]  # the recipe's [subwords] is the table the model ships
    assert (stages.subwords.buckets, stages.subwords.epochs, stages.subwords.seed) == (table["buckets"], table["epochs"], table["seed"])


def test_the_recipe_sets_every_setting_explicitly():
    # so a changed default in the code cannot change what the recipe trains
    assert set(read_recipe(SHIPPED)) == set(settings()) - {"teacher", "init"}
    stages = read_stages(SHIPPED)
    for section in STAGE_SECTIONS:
        written = tomllib.loads(SHIPPED.read_text())[section]
        assert {f"{section}.{k}" for k in written} == set(stage_settings(section)), section
        assert getattr(stages, section) is not None


def test_recipes_without_sections_have_no_later_stages():
    stages = read_stages(RECIPES / "course.toml")
    assert all(getattr(stages, section) is None for section in STAGE_SECTIONS)


def test_the_course_recipe():
    config = resolve(RECIPES / "course.toml")
    assert (config.neg_pairs, config.nce_weight, config.model.bidirectional, config.model.pooling) == (0, 0.0, False, "mean")
    assert config.margin == 0.25 and config.epochs == TrainConfig().epochs


def test_without_a_recipe_train_uses_the_defaults_and_its_encoder():
    config = resolve()
    assert (config.model.bidirectional, config.model.pooling) == (True, "max")
    default = asdict(TrainConfig())
    got = asdict(config)
    assert {k: v for k, v in got.items() if k != "model"} == {k: v for k, v in default.items() if k != "model"}


def test_options_override_the_recipe(tmp_path):
    config = resolve(SHIPPED, {"seed": 7, "epochs": 2, "batch_size": 64, "threads": 3, "teacher": "t.npz", "init": None})
    assert (config.seed, config.epochs, config.batch_size, config.threads, config.teacher) == (7, 2, 64, 3, "t.npz")
    assert config.init is None and config.neg_weight == 3.0 and config.kd_swaps == 128  # the rest is the recipe's
    with pytest.raises(InputError, match=r"option: epochs must be at least 1, not 0"):
        resolve(SHIPPED, {"epochs": 0, "teacher": "t.npz"})


def test_the_command_line_passes_its_options_over_the_recipe(tmp_path, monkeypatch, pairs_file):
    import dupfinder.train.loop as loop

    seen = {}

    def fake_train(train_file, out_dir, config, **kw):
        seen["config"] = config
        return {"validation": {"accuracy": 0.5, "roc_auc": 0.5}, "threshold": 0.5, "training": {"seconds": 0}}

    monkeypatch.setattr(loop, "train", fake_train)
    result = CliRunner().invoke(cli, ["train", str(pairs_file), "--out", str(tmp_path / "m"), "--recipe", str(SHIPPED),
                                      "--teacher", "t.npz", "--epochs", "3", "--seed", "4"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.epochs, config.seed, config.teacher, config.threads, config.kd_swap_stretch) == (3, 4, "t.npz", 1, 1.58)


def test_paths_in_a_recipe_are_relative_to_it(tmp_path):
    (tmp_path / "sub").mkdir()
    config = resolve(write(tmp_path / "sub", 'teacher = "t.npz"\nkd_swaps = 4\n'))
    assert config.teacher == str(tmp_path / "sub" / "t.npz")
    assert resolve(write(tmp_path / "sub", 'teacher = "t.npz"\nkd_swaps = 4\n'), {"teacher": "mine.npz"}).teacher == "mine.npz"


@pytest.mark.parametrize("text, message", [
    ("nce_wieght = 1.0\n", "unknown setting 'nce_wieght'; valid settings are: seed, epochs, "),
    ("kd_weight = 1.0\n", "unknown setting 'kd_weight'"),  # a removed setting
    ("[model]\nwidth = 3\n", "unknown setting 'model.width'"),
    ("[optimizer]\nlr = 1\n", "unknown setting 'optimizer'"),
    ("model.vocab_size = 10\n", "unknown setting 'model.vocab_size'"),  # counted from the data
    ("[verdict]\nhiden = 8\n", "unknown setting 'verdict.hiden'; valid settings are: verdict.hidden, "),
])
def test_an_unknown_setting_is_named_with_the_valid_ones(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as e:
        read_recipe(path)
    assert "\n" not in str(e.value)
    if not message.startswith("unknown setting 'verdict."):
        assert "model.pooling" in str(e.value) and "text.drop_end_punct" in str(e.value)
        assert str(e.value).endswith("; and the sections [teacher], [vocabulary], [verdict], [verifier], [subwords]")


@pytest.mark.parametrize("text, message", [
    ('epochs = "many"\n', "epochs must be an integer, not 'many'"),
    ("epochs = 2.5\n", "epochs must be an integer, not 2.5"),
    ("nce_hard = 1\n", "nce_hard must be true or false, not 1"),
    ("margin = 3\n", "margin must be between 0 and 2, not 3.0"),
    ('[model]\npooling = "attention"\n', "model.pooling must be one of mean, max, meanmax, last, maxlast, not 'attention'"),
    ("kd_swaps = 8\n", "set kd_swaps, which needs a teacher file: pass --teacher FILE"),
    ('teacher = "t.npz"\n', "a teacher file is given, but kd_swaps is 0"),
])
def test_a_bad_value_is_refused(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        resolve(write(tmp_path, text))


def test_cli_errors_are_one_line_with_exit_1(tmp_path, pairs_file):
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, ["train", str(pairs_file), "--out", str(tmp_path / "m"), *args])

    unknown = run("--recipe", str(write(tmp_path, "nce_wieght = 1.0\n")))
    assert unknown.exit_code == 1
    assert unknown.output.startswith(f"Error: recipe {tmp_path / 'r.toml'}: unknown setting 'nce_wieght'; valid settings are: seed, ")
    assert unknown.output.count("\n") == 1
    bad = run("--recipe", str(write(tmp_path, "epochs = \n", "bad.toml")))
    assert bad.exit_code == 1 and bad.output.startswith(f"Error: recipe {tmp_path / 'bad.toml'} is not valid TOML: ")
    assert bad.output.count("\n") == 1
    missing = run("--recipe", str(tmp_path / "none.toml"))
    assert (missing.exit_code, missing.output) == (1, f"Error: recipe {tmp_path / 'none.toml'} does not exist; see recipes/ for examples\n")
    (tmp_path / "b.toml").write_bytes(b"\xff\xfe")
    binary = run("--recipe", str(tmp_path / "b.toml"))
    assert binary.exit_code == 1 and binary.output.startswith("Error: ") and binary.output.count("\n") == 1
    no_teacher = run("--recipe", str(SHIPPED))
    assert no_teacher.exit_code == 1 and "needs a teacher file: pass --teacher FILE" in no_teacher.output
    assert not (tmp_path / "m").exists()


def test_resume_refuses_settings(tmp_path, pairs_file):
    result = CliRunner().invoke(cli, ["train", str(pairs_file), "--out", str(tmp_path / "m"), "--resume", "--recipe", str(SHIPPED), "--epochs", "3"])
    assert result.exit_code == 2
    assert "--resume continues OUT's checkpoint with its recorded settings; drop --recipe, --epochs" in result.output


def test_train_help_shows_the_recipe_example():
    result = CliRunner().invoke(cli, ["train", "-h"])
    assert result.exit_code == 0
    assert "--recipe recipes/shipped.toml" in result.output
    for removed in ("--nce-weight", "--kd-swaps", "--pooling", "--neg-weight", "--lr"):
        assert removed not in result.output


def quora_subset(path: Path, n: int) -> Path:
    with gzip.open(QUORA / "train.csv.gz", "rt", newline="") as f, open(path, "w", newline="") as out:
        rows = csv.reader(f)
        writer = csv.writer(out)
        for i, row in enumerate(rows):
            if i > n:
                break
            writer.writerow(row)
    return path


@pytest.mark.slow
def test_a_model_trains_from_the_shipped_recipe(tmp_path):
    """One epoch of the shipped recipe on 2,000 Quora pairs, with a teacher file of random vectors
    and neighbours (the real one needs all-MiniLM-L6-v2 and minutes)."""
    if not (QUORA / "train.csv.gz").exists():
        pytest.skip("the Quora training file is not here")
    from dupfinder.io import load_pairs

    data = quora_subset(tmp_path / "train.csv", 2000)
    pairs = load_pairs(data)
    dup = pairs.label == 1
    qids = np.unique(np.r_[pairs.qid1[dup], pairs.qid2[dup]])
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(qids), 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    anchors = np.repeat(qids, 3)
    sources = rng.choice(qids, len(anchors))
    keep = anchors != sources
    np.savez(tmp_path / "teacher.npz", qids=qids, vectors=vectors.astype(np.float16), neighbour_qids=anchors[keep], neighbour_sources=sources[keep])

    out = tmp_path / "m"
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(out), "--recipe", str(SHIPPED),
                                      "--teacher", str(tmp_path / "teacher.npz"), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}: validation accuracy ")  # logs go to stderr
    manifest = json.loads((out / "manifest.json").read_text())
    got = manifest["training"]["config"]
    want = asdict(resolve(SHIPPED, {"epochs": 1, "teacher": "teacher.npz"}))
    sha = hashlib.sha256((tmp_path / "teacher.npz").read_bytes()).hexdigest()
    assert got.pop("teacher") == {"name": "teacher.npz", "sha256": sha}
    assert got["model"].pop("vocab_size") == manifest["training"]["data"]["vocab_size"]
    want.pop("teacher"), want["model"].pop("vocab_size")
    assert got == want
    assert str(tmp_path) not in json.dumps({k: v for k, v in manifest["training"].items() if k != "file"})
