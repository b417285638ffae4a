"""Commands that judge questions with a model, no index needed: similarity, evaluate, calibrate."""

from __future__ import annotations

import click

from dupfinder.cli.main import cli
from dupfinder.cli.options import json_option, log, model_option, nonempty, pair_columns_option, read_stdin_question, threads_option, threshold_option
from dupfinder.cli.output import calibration_line, dumps, emit_json, pair_metrics_table, verdict_line
from dupfinder.engine import Engine, load_encoder, set_threads


def model_engine(model_dir, threshold=None, threads=None) -> Engine:
    set_threads(threads)
    return Engine(load_encoder(model_dir), threshold=threshold)


def read_pairs(pairs_file, columns, need_label=True):
    from dupfinder.io import load_pairs

    pairs = load_pairs(pairs_file, columns, need_label=need_label)
    log(pairs.report.summary())
    return pairs


@cli.command()
@click.argument("question1", required=False)
@click.argument("question2", required=False)
@click.option("--file", "pairs_file", type=str, default=None,
              help="Score every pair of this CSV/TSV file (question1, question2 columns; - for stdin) as JSON lines.")
@model_option
@threshold_option
@json_option
@pair_columns_option
@threads_option
def similarity(question1, question2, pairs_file, model_dir, threshold, as_json, columns, threads):
    """Cosine similarity of two questions and whether they are duplicates at tau.

    Either question may be - to read it from stdin. With --file, one JSON line per pair:
    {"score", "threshold", "duplicate"}.

    Example: dupfinder similarity "How old are you?" "What is your age?"
    """
    if pairs_file is not None:
        if question1 is not None or question2 is not None:
            raise click.UsageError("give either QUESTION1 QUESTION2 or --file PAIRS, not both")
        pairs = read_pairs(pairs_file, columns, need_label=False)
        engine = model_engine(model_dir, threshold, threads)
        texts = pairs.questions
        for result in engine.similarities(zip((texts[q] for q in pairs.qid1.tolist()), (texts[q] for q in pairs.qid2.tolist()))):
            click.echo(dumps(result))
        return
    if question1 is None or question2 is None:
        raise click.UsageError("give two questions (or --file PAIRS)")
    if question1 == "-" and question2 == "-":
        raise click.UsageError("only one of the two questions can come from stdin")
    question1 = read_stdin_question("QUESTION1") if question1 == "-" else nonempty(question1, "QUESTION1", "questions must not be empty")
    question2 = read_stdin_question("QUESTION2") if question2 == "-" else nonempty(question2, "QUESTION2", "questions must not be empty")
    result = model_engine(model_dir, threshold).similarity(question1, question2)
    if as_json:
        emit_json(result)
    else:
        click.echo(verdict_line(result))


@cli.command()
@click.argument("pairs_file", type=str)
@model_option
@threshold_option
@click.option("--unseen-from", type=str, default=None, help="Also report pairs whose questions do not occur in this (training) file.")
@json_option
@pair_columns_option
@threads_option
def evaluate(pairs_file, model_dir, threshold, unseen_from, as_json, threads, columns):
    """Accuracy, precision, recall, F1 and ROC-AUC of a model on labeled pairs, at its tau.

    Example: dupfinder evaluate dev.csv --unseen-from train.csv.gz
    """
    engine = model_engine(model_dir, threshold, threads)
    result = engine.evaluate(read_pairs(pairs_file, columns), unseen_from, columns)
    result["model"] = str(engine.encoder.path)
    if as_json:
        emit_json(result)
        return
    for title, m in (("all pairs", result), ("unseen pairs", result.get("unseen"))):
        if m is not None:
            click.echo(pair_metrics_table(title, m))


@cli.command()
@click.argument("pairs_file", type=str)
@model_option
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.90, show_default=True,
              help="Also find the lowest tau whose precision reaches this.")
@click.option("--balanced/--plain", default=True, show_default=True,
              help="Weigh duplicates and non-duplicates equally when maximizing accuracy, so tau does not follow the share of duplicates in PAIRS_FILE.")
@click.option("--write", "write_choice", type=click.Choice(["accuracy", "precision"]), default=None,
              help="Write that tau (best accuracy, or the target precision's) into the model's manifest.json.")
@json_option
@pair_columns_option
@threads_option
def calibrate(pairs_file, model_dir, target_precision, balanced, write_choice, as_json, threads, columns):
    """Threshold advice from labeled pairs: the tau of best accuracy and the tau reaching a target precision.

    Calibrate on held-out pairs, not on the pairs you report results on. --write changes only the
    threshold and calibration entries of the model's manifest; every command then uses it.

    Example: dupfinder calibrate val.csv --model models/mine --target-precision 0.95 --write precision
    """
    from dupfinder.evaluation.calibrate import calibration_record, write_threshold

    if write_choice and model_dir is None:
        raise click.UsageError("--write needs --model DIR: the shipped model is part of the installation; copy it and calibrate the copy")
    engine = model_engine(model_dir, None, threads)
    advice = engine.calibrate(read_pairs(pairs_file, columns), target_precision, balanced)
    advice["model"] = str(engine.encoder.path)
    if write_choice:
        record = calibration_record(advice, write_choice, pairs_file)
        write_threshold(engine.encoder.path, record)
        advice["written"] = {"threshold": record["threshold"], "previous": engine.threshold, "manifest": str(engine.encoder.path / "manifest.json")}
    if as_json:
        emit_json(advice)
        return
    click.echo(f"{pairs_file}: {advice['pairs']:,} pairs, {advice['duplicates']:,} duplicates; model {engine.encoder.path}")
    click.echo(calibration_line("best " + ("balanced accuracy" if balanced else "accuracy"), advice["best_accuracy"]))
    if advice["at_precision"] is None:
        click.echo(f"precision >= {target_precision:g}: not reached (best {advice['max_precision']:.4f})")
    else:
        click.echo(calibration_line(f"precision >= {target_precision:g}", advice["at_precision"]))
    click.echo(calibration_line("current", advice["current"]))
    if write_choice:
        w = advice["written"]
        click.echo(f"wrote tau {w['threshold']:.4f} (was {w['previous']:.4f}) into {w['manifest']}")
