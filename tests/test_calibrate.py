import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from dupfinder.evaluation.calibrate import advise, calibration_record, write_threshold
from dupfinder.cli import cli
from dupfinder.errors import InputError

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
LABELS = np.array([1, 1, 0, 1, 0, 0])
# cuts (score > t): t=0.75 keeps 2 dups, accuracy 5/6; t=0.55 keeps 3 dups and 1 non-dup, precision 3/4


def test_advise_by_hand():
    a = advise(SCORES, LABELS, target_precision=0.75)
    assert a["best_accuracy"]["threshold"] == pytest.approx(0.75)
    assert a["best_accuracy"]["accuracy"] == pytest.approx(5 / 6)
    # the most permissive cut that still reaches 3/4 precision
    assert a["at_precision"]["threshold"] == pytest.approx(0.55)
    assert a["at_precision"]["precision"] == pytest.approx(0.75)
    assert a["at_precision"]["recall"] == pytest.approx(1.0)
    assert advise(SCORES, LABELS, target_precision=1.0)["at_precision"]["threshold"] == pytest.approx(0.75)


def test_balanced_accuracy_ignores_class_share():
    # 1 dup, 3 non-dups: plain accuracy is best calling nothing a duplicate, balanced is not
    scores, labels = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 1, 0, 0])
    assert advise(scores, labels, balanced=False)["best_accuracy"]["threshold"] > 0.9
    assert advise(scores, labels, balanced=True)["best_accuracy"]["threshold"] == pytest.approx(0.75)


def test_calling_nothing_a_duplicate_never_meets_the_precision_target():
    a = advise(np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0]), target_precision=0.99)
    assert a["at_precision"] is None
    assert a["max_precision"] == pytest.approx(0.5)
    with pytest.raises(InputError, match="no threshold reaches precision 0.99 on dev.csv .the best is 0.5000.; lower --target-precision"):
        calibration_record(a, "precision", "dev.csv")


def test_one_class_is_an_input_error():
    with pytest.raises(InputError, match="both duplicates and non-duplicates"):
        advise(SCORES, np.ones(6))


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    return out


def test_write_threshold_changes_only_the_threshold_fields(model_copy):
    from dupfinder import load_model

    before = json.loads((model_copy / "manifest.json").read_text())
    other_files = {p.name: p.read_bytes() for p in model_copy.iterdir() if p.name != "manifest.json"}
    record = calibration_record(advise(SCORES, LABELS), "accuracy", "pairs.csv")
    write_threshold(model_copy, record)
    after = json.loads((model_copy / "manifest.json").read_text())
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {"threshold", "calibration"}
    assert after["threshold"] == pytest.approx(0.75)
    assert after["calibration"]["pairs_file"] == "pairs.csv"
    assert {p.name: p.read_bytes() for p in model_copy.iterdir() if p.name != "manifest.json"} == other_files
    assert not list(model_copy.glob("*.tmp"))
    encoder = load_model(model_copy)
    assert encoder.threshold == pytest.approx(0.75) and encoder.fingerprint == before["fingerprint"]


def test_cli_calibrate_prints_and_writes(model_copy, pairs_file):
    result = CliRunner().invoke(cli, ["calibrate", str(pairs_file), "--model", str(model_copy), "--write", "accuracy", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "best balanced accuracy: tau " in result.output
    assert "current: tau " in result.output
    manifest = json.loads((model_copy / "manifest.json").read_text())
    assert f"wrote tau {manifest['threshold']:.4f}" in result.output
    assert manifest["calibration"]["chosen_for"] == "accuracy"


def test_cli_calibrate_json(tiny_model, pairs_file):
    result = CliRunner().invoke(cli, ["calibrate", str(pairs_file), "--model", str(tiny_model), "--json", "--target-precision", "0.5"])
    assert result.exit_code == 0, result.output
    advice = json.loads(result.stdout)
    assert advice["pairs"] == 32 and advice["target_precision"] == 0.5
    assert {"best_accuracy", "at_precision", "current"} <= advice.keys()
    assert "written" not in advice


def test_cli_write_needs_an_explicit_model(pairs_file):
    result = CliRunner().invoke(cli, ["calibrate", str(pairs_file), "--write", "accuracy"])
    assert result.exit_code == 2
    assert "--write needs --model DIR: the shipped model is part of the installation" in result.output


def test_cli_unreachable_precision_is_an_error_and_writes_nothing(model_copy, tmp_path):
    # an identical-text non-duplicate scores cosine 1, above every duplicate: precision stays below 0.99
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "id,qid1,qid2,question1,question2,is_duplicate\n"
        "1,1,2,How old are you?,How old are you?,0\n"
        "2,3,4,How do I learn Python quickly?,What is the fastest way to learn Python?,1\n"
        "3,5,6,Why is the sky blue?,What makes the sky look blue?,1\n"
        "4,7,8,Is coffee bad for health?,Is tea good for health?,0\n"
    )
    before = (model_copy / "manifest.json").read_bytes()
    result = CliRunner().invoke(cli, ["calibrate", str(pairs), "--model", str(model_copy), "--target-precision", "0.99", "--write", "precision"])
    assert result.exit_code == 1
    assert f"Error: no threshold reaches precision 0.99 on {pairs}" in result.output
    assert "lower --target-precision" in result.output
    assert (model_copy / "manifest.json").read_bytes() == before


def test_cli_missing_files(tiny_model, pairs_file, tmp_path):
    result = CliRunner().invoke(cli, ["calibrate", str(tmp_path / "nope.csv"), "--model", str(tiny_model)])
    assert result.exit_code == 1
    assert f"Error: file not found: {tmp_path / 'nope.csv'}" in result.output
    result = CliRunner().invoke(cli, ["calibrate", str(pairs_file), "--model", str(tmp_path / "nomodel")])
    assert result.exit_code == 1
    assert f"Error: model directory not found: {tmp_path / 'nomodel'}" in result.output
