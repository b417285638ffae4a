"""CLI of the encoder: train, evaluate, similarity, and every user error with its exit code and message."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dupfinder.cli import cli

HEADER = "id,qid1,qid2,question1,question2,is_duplicate\n"


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def test_version_and_help():
    assert run("--version").output.startswith("dupfinder, version ")
    result = run("-h")
    assert result.exit_code == 0 and "similarity" in result.output


def test_similarity_and_evaluate_on_tiny_model(tiny_model, pairs_file):
    r = run("similarity", "How old are you?", "What is your age?", "--model", tiny_model, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) == {"score", "threshold", "duplicate", "cosine", "verdict"} and out["duplicate"] == (out["score"] > out["threshold"])

    r = run("evaluate", pairs_file, "--model", tiny_model, "--json", "--unseen-from", pairs_file)
    assert r.exit_code == 0, r.output
    m = json.loads(r.output.splitlines()[-1])
    assert {"pairs", "threshold", "accuracy", "precision", "recall", "f1", "roc_auc"} <= set(m)
    assert m["pairs"] == 32
    assert m["unseen"] is None  # every question occurs in the file itself
    c = m["confusion"]
    assert c["tp"] + c["fp"] + c["fn"] + c["tn"] == 32

    r = run("evaluate", pairs_file, "--model", tiny_model, "--threshold", "0.5")
    assert r.exit_code == 0 and "at tau 0.5000" in r.output and "ROC-AUC" in r.output


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "Error: {path} is empty"),
        ("a,b\n1,2\n", "Error: column 'question1' not found; columns are: a, b. Use --q1-column NAME"),
        (HEADER, "Error: {path} has no usable question pairs"),
        (HEADER + "1,1,2,A?,B?,0\n2,3,4,C?,D?,0\n", "Error: {path} has no duplicate pairs"),
    ],
)
def test_train_bad_input(tmp_path, content, message):
    path = tmp_path / "pairs.csv"
    path.write_text(content)
    r = run("train", path, "--out", tmp_path / "out")
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert lines[-1].startswith(message.format(path=path))
    assert len(lines) <= 2  # a log line at most, then the error; no traceback
    assert "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_train_missing_file_and_existing_model_is_not_overwritten(tmp_path, tiny_model):
    r = run("train", tmp_path / "missing.csv", "--out", tmp_path / "out")
    assert r.exit_code == 1 and r.output == f"Error: file not found: {tmp_path / 'missing.csv'}\n"
    before = {p.name: p.read_bytes() for p in tiny_model.iterdir()}
    r = run("train", "whatever.csv", "--out", tiny_model)
    assert r.exit_code == 1 and "already holds a model" in r.output
    assert {p.name: p.read_bytes() for p in tiny_model.iterdir()} == before


def test_train_out_that_cannot_be_a_folder_is_refused_before_training(tmp_path, pairs_file):
    (tmp_path / "file").write_text("keep me")
    r = run("train", pairs_file, "--out", tmp_path / "file")
    assert r.exit_code == 1 and r.output == f"Error: --out {tmp_path / 'file'} is a file, not a folder\n"
    r = run("train", pairs_file, "--out", tmp_path / "file" / "model")
    assert r.exit_code == 1 and r.output.startswith(f"Error: cannot create or write {tmp_path / 'file' / 'model'}: ")
    assert (tmp_path / "file").read_text() == "keep me"


def test_train_resume_without_checkpoint(tmp_path, pairs_file):
    r = run("train", pairs_file, "--out", tmp_path / "fresh", "--resume")
    assert r.exit_code == 1 and "no checkpoint to resume" in r.output


def test_train_init_from_a_missing_or_corrupt_model_is_refused_before_reading(tmp_path, pairs_file, tiny_model):
    r = run("train", pairs_file, "--out", tmp_path / "o", "--init", tmp_path / "nope")
    assert r.exit_code == 1 and r.output == f"Error: model directory not found: {tmp_path / 'nope'}\n"
    m = copy_model(tiny_model, tmp_path / "broken")
    (m / "weights.npz").write_bytes(b"not weights")
    r = run("train", pairs_file, "--out", tmp_path / "o", "--init", m)
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "restore the model" in r.output
    assert not (tmp_path / "o" / "manifest.json").exists()
    r = run("train", pairs_file, "--out", tmp_path / "o", "--init", tiny_model, "--resume")
    assert r.exit_code == 2 and "drop --init" in r.output


def test_train_bad_usage_exits_2(pairs_file, tmp_path):
    r = run("train", pairs_file, "--out", tmp_path / "o", "--batch-size", "1")
    assert r.exit_code == 2 and "--batch-size" in r.output


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_model_errors(tmp_path, tiny_model):
    def similarity(model):
        return run("similarity", "a?", "b?", "--model", model)

    r = similarity(tmp_path / "nope")
    assert r.exit_code == 1 and r.output == f"Error: model directory not found: {tmp_path / 'nope'}\n"

    m = copy_model(tiny_model, tmp_path / "no_manifest")
    (m / "manifest.json").unlink()
    r = similarity(m)
    assert r.exit_code == 1 and r.output == f"Error: {m} is not a dupfinder model: manifest.json is missing\n"

    m = copy_model(tiny_model, tmp_path / "newer")
    manifest = json.loads((m / "manifest.json").read_text())
    manifest["format_version"] = 99
    (m / "manifest.json").write_text(json.dumps(manifest))
    r = similarity(m)
    assert r.exit_code == 1 and "has model format 99, newer than this dupfinder reads (2); upgrade dupfinder" in r.output

    m = copy_model(tiny_model, tmp_path / "corrupt_weights")
    (m / "weights.npz").write_bytes(b"not a weights file")
    r = similarity(m)
    assert r.exit_code == 1 and r.output == f"Error: {m / 'weights.npz'} does not match {m / 'manifest.json'} (stale or damaged); restore the model\n"

    m = copy_model(tiny_model, tmp_path / "no_weights")
    (m / "weights.npz").unlink()
    r = similarity(m)
    assert r.exit_code == 1 and r.output == f"Error: {m} is not a dupfinder model: weights.npz is missing\n"

    m = copy_model(tiny_model, tmp_path / "corrupt_json")
    (m / "config.json").write_text("{")
    r = similarity(m)
    assert r.exit_code == 1 and "config.json is corrupt" in r.output

    m = copy_model(tiny_model, tmp_path / "attention")  # a pooling an earlier release trained and this one dropped
    config = json.loads((m / "config.json").read_text())
    config["model"]["pooling"] = "attention"
    (m / "config.json").write_text(json.dumps(config))
    r = similarity(m)
    assert r.exit_code == 1 and r.output == (f"Error: {m} pools with 'attention', which this dupfinder does not run (it runs mean, max, "
                                             "meanmax, last, maxlast); use the dupfinder release that trained it, or retrain\n")


def test_empty_question_is_bad_usage(tiny_model):
    r = run("similarity", "  ", "b?", "--model", tiny_model)
    assert r.exit_code == 2 and "questions must not be empty" in r.output


def test_evaluate_threshold_out_of_range(tiny_model, pairs_file):
    r = run("evaluate", pairs_file, "--model", tiny_model, "--threshold", "-3")
    assert r.exit_code == 2 and "--threshold" in r.output


def test_cli_makes_openmp_waiters_sleep_unless_the_user_chose(monkeypatch, tiny_model):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert CliRunner().invoke(cli, ["similarity", "a b", "a c", "--model", str(tiny_model)]).exit_code == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert CliRunner().invoke(cli, ["similarity", "a b", "a c", "--model", str(tiny_model)]).exit_code == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_torch_threads_apply_when_torch_is_first_loaded_by_the_network(tiny_model):
    # set before torch is imported: the setting must still reach torch once the network loads it
    code = (
        "import sys; from dupfinder.model.encoder import set_torch_threads, load_model\n"
        "set_torch_threads(1); e = load_model(sys.argv[1], backend='torch')\n"
        "assert 'torch' not in sys.modules; e.network\n"
        "import torch; print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tiny_model)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_distillation_bad_usage(tmp_path, pairs_file):
    """The distillation settings live in recipes now: a teacher nothing uses, a setting without the one it
    needs, and a missing teacher file are one-line errors (exit 1), before any training."""
    (tmp_path / "kd.toml").write_text("kd_swaps = 8\n")
    (tmp_path / "stretch.toml").write_text("kd_swap_stretch = 1.5\n")
    r = run("train", pairs_file, "--out", tmp_path / "o", "--teacher", tmp_path / "none.npz")
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert "a teacher file is given, but kd_swaps is 0 in the settings and nothing else uses it" in r.output
    r = run("train", pairs_file, "--out", tmp_path / "o", "--recipe", tmp_path / "stretch.toml")
    assert r.exit_code == 1 and "set kd_swap_stretch, which acts only with kd_swaps; set kd_swaps too" in r.output
    r = run("train", pairs_file, "--out", tmp_path / "o", "--recipe", tmp_path / "kd.toml", "--teacher", tmp_path / "none.npz")
    assert (r.exit_code, r.output) == (1, f"Error: teacher file {tmp_path / 'none.npz'} does not exist\n")
    assert not (tmp_path / "o" / "manifest.json").exists()
    r = run("teacher", pairs_file, "--out", tmp_path / "teacher.txt")
    assert r.exit_code == 2 and "must end in .npz" in r.output
    r = run("teacher", pairs_file, "--out", tmp_path / "no" / "such" / "teacher.npz")
    assert r.exit_code == 1 and "does not exist" in r.output


def test_pair_columns_named_by_options(tmp_path, tiny_model, pairs_file):
    renamed = tmp_path / "renamed.csv"
    lines = Path(pairs_file).read_text().splitlines()
    lines[0] = "id,a_id,b_id,first,second,dup"
    renamed.write_text("\n".join(lines) + "\n")
    r = run("evaluate", renamed, "--model", tiny_model, "--json")
    assert r.exit_code == 1 and "column 'question1' not found" in r.output and "--q1-column" in r.output
    options = ["--q1-column", "first", "--q2-column", "second", "--label-column", "dup", "--qid1-column", "a_id", "--qid2-column", "b_id"]
    got = json.loads(run("evaluate", renamed, "--model", tiny_model, "--json", *options).output.splitlines()[-1])
    want = json.loads(run("evaluate", pairs_file, "--model", tiny_model, "--json").output.splitlines()[-1])
    assert got["pairs"] == want["pairs"] and got["accuracy"] == want["accuracy"] and got["roc_auc"] == want["roc_auc"]
    r = run("calibrate", renamed, "--model", tiny_model, "--json", *options)
    assert r.exit_code == 0, r.output
    (tmp_path / "small.toml").write_text("glove = false\n\n[model]\nd_model = 8\n")
    r = run("train", renamed, "--out", tmp_path / "m", "--batch-size", "4", "--epochs", "1", "--recipe", tmp_path / "small.toml", *options)
    assert r.exit_code == 0, r.output
