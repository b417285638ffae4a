"""Commands that judge questions with a model, no index needed: similarity, evaluate, calibrate."""

from __future__ import annotations

from pathlib import Path

import click

from dupfinder.cli.main import cli
from dupfinder.cli.options import (json_option, log, model_option, nonempty, pair_columns_option, read_stdin_question, threads_option,
                                   threshold_option, verdict_option)
from dupfinder.cli.output import calibration_line, dumps, emit_json, pair_metrics_table, verdict_line
from dupfinder.engine import Engine, load_encoder, set_threads


def model_engine(model_dir, threshold=None, threads=None, verdict="auto") -> Engine:
    set_threads(threads)
    return Engine(load_encoder(model_dir), threshold=threshold, verdict=verdict)


def note_verdict(engine: Engine) -> None:
    """After a result people read: say that a model without a head decided by the cosine rule."""
    if engine.verdict.note:
        log(f"note: {engine.verdict.note}")


def read_pairs(pairs_file, columns, need_label=True):
    from dupfinder.io import load_pairs

    pairs = load_pairs(pairs_file, columns, need_label=need_label)
    log(pairs.report.summary())
    return pairs


@cli.command()
@click.argument("question1", required=False)
@click.argument("question2", required=False)
@click.option("--file", "pairs_file", type=str, default=None,
              help="Score every pair of this CSV/TSV or JSON lines file (question1, question2 columns or keys; - for stdin) as JSON lines.")
@model_option
@threshold_option
@verdict_option
@json_option
@pair_columns_option
@threads_option
def similarity(question1, question2, pairs_file, model_dir, threshold, verdict, as_json, columns, threads):
    """Whether two questions are duplicates: the verdict's score, the threshold and the cosine.

    The score is the model's pair head's probability (the cosine under --verdict cosine, or for a
    model without a head). Either question may be - to read it from stdin. With --file, one JSON
    line per pair: {"score", "threshold", "duplicate", "cosine", "verdict"}.

    Example: dupfinder similarity "How old are you?" "What is your age?"
    """
    if pairs_file is not None:
        if question1 is not None or question2 is not None:
            raise click.UsageError("give either QUESTION1 QUESTION2 or --file PAIRS, not both")
        pairs = read_pairs(pairs_file, columns, need_label=False)
        engine = model_engine(model_dir, threshold, threads, verdict)
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
    engine = model_engine(model_dir, threshold, verdict=verdict)
    result = engine.similarity(question1, question2)
    if as_json:
        emit_json(result)
    else:
        click.echo(verdict_line(result))
        note_verdict(engine)


@cli.command()
@click.argument("pairs_file", type=str)
@model_option
@threshold_option
@verdict_option
@click.option("--unseen-from", type=str, default=None, help="Also report pairs whose questions do not occur in this (training) file.")
@json_option
@pair_columns_option
@threads_option
def evaluate(pairs_file, model_dir, threshold, verdict, unseen_from, as_json, threads, columns):
    """Accuracy, precision, recall, F1 and ROC-AUC of a model's verdicts on labeled pairs, at its threshold.

    Example: dupfinder evaluate dev.csv --unseen-from train.csv.gz   (add --verdict cosine for the cosine rule)
    """
    engine = model_engine(model_dir, threshold, threads, verdict)
    result = engine.evaluate(read_pairs(pairs_file, columns), unseen_from, columns)
    result["model"] = str(engine.encoder.path)
    if engine.verdict.note:
        result["verdict_note"] = engine.verdict.note
    if as_json:
        emit_json(result)
        return
    for title, m in (("all pairs", result), ("unseen pairs", result.get("unseen"))):
        if m is not None:
            click.echo(pair_metrics_table(title, m, result["verdict"]))
    note_verdict(engine)


@cli.command()
@click.argument("pairs_file", type=str)
@model_option
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.90, show_default=True,
              help="Also find the lowest tau whose precision reaches this.")
@click.option("--balanced/--plain", default=True, show_default=True,
              help="Weigh duplicates and non-duplicates equally when maximizing accuracy, so tau does not follow the share of duplicates in PAIRS_FILE.")
@click.option("--write", "write_choice", type=click.Choice(["accuracy", "precision"]), default=None,
              help="Write that tau (best accuracy, or the target precision's) into the model's manifest.json.")
@verdict_option
@json_option
@pair_columns_option
@threads_option
def calibrate(pairs_file, model_dir, target_precision, balanced, write_choice, verdict, as_json, threads, columns):
    """Threshold advice from labeled pairs: the tau of best accuracy and the tau reaching a target precision.

    Calibrate on held-out pairs, not on the pairs you report results on. --write changes only the
    threshold and calibration entries of the model's manifest (the pair head's, where it decides);
    every command then uses it.

    Example: dupfinder calibrate val.csv --model models/mine --target-precision 0.95 --write precision
    """
    from dupfinder.evaluation.calibrate import calibration_record, write_threshold

    if write_choice and model_dir is None:
        raise click.UsageError("--write needs --model DIR: the shipped model is part of the installation; copy it and calibrate the copy")
    engine = model_engine(model_dir, None, threads, verdict)
    if write_choice and engine.verdict.kind == "head" and (engine.encoder.manifest["verdict"] or {}).get("verifier"):
        raise click.UsageError("this model's verdict stage has a verifier: --write the threshold of the whole stage, with --verdict auto")
    advice = engine.calibrate(read_pairs(pairs_file, columns), target_precision, balanced)
    advice["model"] = str(engine.encoder.path)
    if write_choice:
        record = calibration_record(advice, write_choice, pairs_file)
        if engine.verdict.kind in ("head", "head+verifier"):
            from dupfinder.verdict.head import write_head_threshold

            write_head_threshold(engine.encoder.path, record)
        else:
            write_threshold(engine.encoder.path, record)
        advice["written"] = {"threshold": record["threshold"], "previous": engine.threshold, "verdict": engine.verdict.kind,
                             "manifest": str(engine.encoder.path / "manifest.json")}
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


@cli.command("train-verdict")
@click.argument("model_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("train_file", type=str)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Passes over the training pairs (default: 6).")
@click.option("--unknown-pairs", type=click.IntRange(min=0), default=None,
              help="Constructed pairs per kind that teach unknown words (default: 20000; 0: none).")
@click.option("--wordnet-pairs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also this many one-word pairs built with WordNet from training questions (nltk and WordNet's files, "
                   "e.g. Debian's wordnet-base copied under $NLTK_DATA/corpora/wordnet).")
@click.option("--seed", type=int, default=0, show_default=True)
@threads_option
def train_verdict_cmd(model_dir, train_file, epochs, unknown_pairs, wordnet_pairs, seed, threads):
    """Train a model directory's pair head (the verdict stage) on a labeled pairs file.

    The head reads both questions' stored vectors and their words; it is trained on the pairs the
    encoder trained on and its threshold is chosen on the encoder's validation split. Writes
    verdict.npz and the manifest's "verdict" entry; the encoder and its fingerprint do not change,
    so indexes built with the model stay valid. Needs the train extra (PyTorch).

    Example: dupfinder train-verdict models/mine train.csv.gz --threads 2
    """
    from dataclasses import replace

    from dupfinder.model.encoder import require_torch
    from dupfinder.train.head import HeadConfig, train_verdict

    require_torch("train-verdict")
    config = HeadConfig(seed=seed, threads=threads or 1, wordnet_pairs=wordnet_pairs)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if unknown_pairs is not None:
        config = replace(config, unknown_pairs=unknown_pairs)
    load_encoder(model_dir)  # a missing or broken model fails before the data is read
    entry = train_verdict(model_dir, train_file, config, log=log)
    click.echo(f"pair head of {model_dir}: threshold {entry['threshold']:.4f}, validation accuracy "
               f"{entry['validation']['accuracy']:.4f}, ROC-AUC {entry['validation']['roc_auc']:.4f}")


@cli.command("train-verifier")
@click.argument("model_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("train_file", type=str)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Passes over the training pairs (default: 6).")
@click.option("--wordnet-pairs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also this many one-word pairs built with WordNet from training questions (as train-verdict's).")
@click.option("--members", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Networks the verifier stacks: the second also tunes the embeddings of frequent words.")
@click.option("--tuned-words", type=click.IntRange(min=0), default=None,
              help="Frequent words whose embeddings the second network tunes (default: 30000).")
@click.option("--seed", type=int, default=0, show_default=True)
@threads_option
def train_verifier_cmd(model_dir, train_file, epochs, wordnet_pairs, members, tuned_words, seed, threads):
    """Train a model directory's interaction verifier, over its pair head, on a labeled pairs file.

    The verifier reads both questions' words side by side; it decides the pairs whose head
    probability is near the threshold, stacked with the head. Writes verifier.npz and sets the
    verdict's threshold; the encoder, its fingerprint and the head do not change. Needs the train
    extra (PyTorch); train the head first (train-verdict).

    Example: dupfinder train-verifier models/mine train.csv.gz --threads 2
    """
    from dataclasses import replace

    from dupfinder.model.encoder import require_torch
    from dupfinder.train.verifier import VerifierConfig, train_verifier

    require_torch("train-verifier")
    config = VerifierConfig(seed=seed, threads=threads or 2, wordnet_pairs=wordnet_pairs, members=members)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if tuned_words is not None:
        config = replace(config, tuned_words=tuned_words)
    encoder = load_encoder(model_dir)  # a missing or broken model fails before the data is read
    if not isinstance(encoder.manifest.get("verdict"), dict):
        raise click.UsageError(f"{model_dir} has no pair head; train one first with `dupfinder train-verdict`")
    record = train_verifier(model_dir, train_file, config, log=log)
    cal = record["calibration"]
    click.echo(f"verifier of {model_dir}: threshold {encoder_threshold(model_dir):.4f}, calibration accuracy "
               f"{cal['accuracy']:.4f}, ROC-AUC {cal['roc_auc']:.4f}, {cal['in_band']:.1%} of pairs in its band")


def encoder_threshold(model_dir) -> float:
    from dupfinder.model.files import read_json

    return float(read_json(Path(model_dir) / "manifest.json")["verdict"]["threshold"])


@cli.command("train-rewording")
@click.argument("model_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("train_file", type=str)
def train_rewording_cmd(model_dir, train_file):
    """Measure the rewording rule's duplicate rates on a labeled pairs file, into a model's verdict.

    Pairs that read the same after auxiliaries (do, can, is, ...), second-person forms (you, u,
    thou, ...), articles and inflections are mapped, or that differ only in word order, are
    duplicates with at least their class's rate in TRAIN_FILE. train-verdict measures the rates
    itself; this adds them to a model trained before. No PyTorch needed; the fingerprint stays.

    Example: dupfinder train-rewording models/mine train.csv.gz
    """
    from dupfinder.verdict.rewording import add_rewording

    add_rewording(model_dir, train_file, log=log)
