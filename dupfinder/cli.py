"""The `dupfinder` command line: parse, validate, call the library, format output. No algorithms here."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import DupfinderError


class Group(click.Group):
    """Turns library errors into one-line `Error: ...` messages (exit 1) instead of tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DupfinderError as e:
            raise click.ClickException(str(e)) from None


def model_option(f):
    return click.option(
        "--model", "model_dir", type=click.Path(path_type=Path), envvar="DUPFINDER_MODEL", default=None,
        help="Model directory (default: the model shipped with dupfinder; env DUPFINDER_MODEL).",
    )(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: all).")(f)


def threshold_option(f):
    return click.option(
        "--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
        help="Cosine above which two questions are duplicates (default: the model's calibrated tau).",
    )(f)


def pair_columns_option(f):
    """--q1-column, --q2-column, --label-column, --qid1-column, --qid2-column, passed on as `columns`."""
    names = (("--q1-column", "question1", "the first question"), ("--q2-column", "question2", "the second question"),
             ("--label-column", "is_duplicate", "the 1/0 duplicate label"), ("--qid1-column", "qid1", "the first question's id"),
             ("--qid2-column", "qid2", "the second question's id"))

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from .data import PairColumns

        values = [kwargs.pop(flag[2:].replace("-", "_")) for flag, _, _ in names]
        return f(*args, columns=PairColumns(*values), **kwargs)

    for flag, default, what in reversed(names):
        wrapper = click.option(flag, type=str, default=None, help=f"Pairs-file column of {what} (default: {default}).")(wrapper)
    return wrapper


def set_threads(threads: int | None) -> None:
    if threads:
        from .encode import set_torch_threads  # applied when torch loads: a query may never need it

        set_torch_threads(threads)


def check_out_dir(path: Path) -> None:
    """A model folder that can be created or written, checked before minutes of work: else a one-line error."""
    from .artifacts import nearest_existing

    parent = nearest_existing(path)
    if parent == path and not path.is_dir():
        raise click.ClickException(f"--out {path} is a file, not a folder")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise click.ClickException(f"cannot create or write {path}: {parent} is not a writable folder; choose another --out")


def log(message: str) -> None:
    click.echo(message, err=True)


def load_model_and_pairs(model_dir, pairs_file, threads, columns=None):
    """The encoder and the labeled pairs that `evaluate` and `calibrate` work on; the read report goes to stderr."""
    from .data import load_pairs
    from .encode import load_model

    set_threads(threads)
    encoder = load_model(model_dir)
    pairs = load_pairs(pairs_file, columns)
    log(pairs.report.summary())
    return encoder, pairs


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dupfinder")
def cli():
    """Find duplicate questions: a Siamese LSTM encoder, a FAISS index and SQLite metadata.

    Example: dupfinder similarity "How old are you?" "What is your age?"
    """
    from .encode import use_jit

    use_jit(False)  # one process per command: loading the numba kernel would cost more than it saves
    # OpenMP threads that spin while waiting collapse when another process holds a core: bulk
    # encoding of 60,000 questions took 4 min instead of 10 s beside one busy process. Sleeping
    # waiters cost about 7% on an idle machine. Set before torch loads; a user's own value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@cli.command()
@click.argument("train_file", type=str)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Model directory to write.")
@click.option("--dev", "dev_file", type=str, default=None, help="Pairs file scored after each epoch, for the log only.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt with its recorded settings.")
@click.option("--init", "init_dir", type=str, default=None,
              help="Start from this model directory (fine-tuning): its network, vocabulary and text settings replace the architecture options and GloVe.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True, help="Duplicate pairs per batch.")
@click.option("--neg-pairs", type=click.IntRange(min=0), default=128, show_default=True, help="Labeled non-duplicate pairs per batch (0: course recipe).")
@click.option("--neg-weight", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Weight of the labeled non-duplicates' ranking term.")
@click.option("--swap-negatives", type=click.IntRange(min=0), default=0, show_default=True,
              help="Synthetic negatives per batch: a question with one word replaced by another.")
@click.option("--swap-weight", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Weight of the swapped-word negatives' ranking term.")
@click.option("--cluster-pairs", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Implied duplicates (a = b and b = c, so a = c) added per labeled duplicate of a cluster.")
@click.option("--margin", type=click.FloatRange(0.0, 2.0), default=0.25, show_default=True, help="Triplet margin alpha.")
@click.option("--nce-weight", type=click.FloatRange(min=0.0), default=0.25, show_default=True,
              help="Weight of an added in-batch softmax (InfoNCE) term; 0 = triplet loss only.")
@click.option("--nce-scale", type=click.FloatRange(min=0.0, min_open=True), default=20.0, show_default=True,
              help="Inverse temperature of the InfoNCE term.")
@click.option("--nce-hard/--no-nce-hard", default=False, show_default=True,
              help="Add to the InfoNCE term, per anchor, a question labeled not a duplicate of its cluster.")
@click.option("--teacher", type=str, default=None, help="Teacher vectors (.npz from `dupfinder teacher`) to distill from.")
@click.option("--kd-weight", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Weight of the distillation term: rank in-batch candidates as the teacher does (needs --teacher).")
@click.option("--kd-scale", type=click.FloatRange(min=0.0, min_open=True), default=20.0, show_default=True,
              help="Inverse temperature of the distillation softmax.")
@click.option("--kd-negatives-only/--kd-all", default=False, show_default=True,
              help="Distil only the order of each row's negatives, leaving its labeled duplicate out.")
@click.option("--kd-swaps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Anchors per batch whose cosine to their near miss or neighbour (from `dupfinder teacher --swaps/--neighbours`) learns the teacher's.")
@click.option("--kd-swap-weight", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Weight of the near-miss distillation term (squared error of the cosines).")
@click.option("--kd-swap-below", type=click.FloatRange(-1.0, 1.0), default=0.0, show_default=True,
              help="Near misses the teacher scores below this cosine count as labeled non-duplicates (0: off; needs --kd-swaps).")
@click.option("--kd-swap-stretch", type=click.FloatRange(min=0.0, min_open=True), default=1.0, show_default=True,
              help="The near-miss term's target is 1 - S x (1 - the teacher's cosine): S > 1 maps a teacher's higher threshold onto the student's.")
@click.option("--debias-overlap", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Weigh labeled pairs by how much their label defies word overlap (1 - P(label | overlap)): 0 = off, 1 = fully.")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=2e-3, show_default=True)
@click.option("--d-model", type=click.IntRange(min=1), default=128, show_default=True, help="LSTM width per direction.")
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Dropout on the word vectors and the pooled vector, in training only.")
@click.option("--bidirectional/--unidirectional", default=True, show_default=True)
@click.option("--pooling", type=click.Choice(["mean", "max", "meanmax", "last", "maxlast", "attention"]), default="max", show_default=True,
              help="Over the LSTM states: mean, max, both; last: each direction's final state; maxlast: max and last; attention: learned weights.")
@click.option("--drop-end-punct/--keep-end-punct", default=False, show_default=True,
              help="Drop the ?, . and ! that end a question before encoding; saved with the model.")
@click.option("--glove/--no-glove", default=True, show_default=True, help="Start from GloVe 6B 50d (needs the 'glove' extra).")
@click.option("--val-fraction", type=click.FloatRange(0.0, 0.5, min_open=True), default=0.03, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@pair_columns_option
def train(train_file, out_dir, dev_file, resume, init_dir, seed, epochs, batch_size, neg_pairs, neg_weight, swap_negatives, swap_weight, cluster_pairs, margin, nce_weight, nce_scale, nce_hard, teacher, kd_weight, kd_scale, kd_negatives_only, kd_swaps, kd_swap_weight, kd_swap_below, kd_swap_stretch, debias_overlap, lr, d_model, layers, dropout,
          bidirectional, pooling, drop_end_punct, glove, val_fraction, threads, columns):
    """Train an encoder on a pairs file (id,qid1,qid2,question1,question2,is_duplicate).

    Writes a model directory with config, vocabulary, weights and a manifest holding the calibrated
    threshold and validation metrics. Ctrl-C keeps the last checkpoint; --resume continues it.

    Example: dupfinder train train.csv.gz --out models/mine --dev dev.csv
    """
    from .progress import Progress
    from .train import TrainConfig, TrainingInterrupted, train as run_training

    check_out_dir(out_dir)
    if not resume and (out_dir / "manifest.json").exists():
        raise click.ClickException(f"{out_dir} already holds a model; choose another --out or delete it first")
    if (kd_weight or kd_swaps) and not teacher:
        raise click.UsageError(f"{'--kd-weight' if kd_weight else '--kd-swaps'} needs --teacher FILE")
    if kd_swap_below and not kd_swaps:
        raise click.UsageError("--kd-swap-below needs --kd-swaps N")
    if kd_swap_stretch != 1.0 and not kd_swaps:
        raise click.UsageError("--kd-swap-stretch needs --kd-swaps N")
    if teacher and not (kd_weight or kd_swaps):
        raise click.UsageError("--teacher needs --kd-weight W or --kd-swaps N, or it would not be used")
    if init_dir and resume:
        raise click.UsageError("--resume continues OUT's checkpoint with its recorded settings; drop --init")
    config = TrainConfig(
        seed=seed, epochs=epochs, batch_size=batch_size, neg_pairs=neg_pairs, neg_weight=neg_weight, sub_negs=swap_negatives, sub_weight=swap_weight, cluster_pairs=cluster_pairs, margin=margin, nce_weight=nce_weight, nce_scale=nce_scale, nce_hard=nce_hard, lr=lr,
        teacher=teacher, kd_weight=kd_weight, kd_scale=kd_scale, kd_negatives_only=kd_negatives_only, kd_swaps=kd_swaps, kd_swap_weight=kd_swap_weight, kd_swap_below=kd_swap_below, kd_swap_stretch=kd_swap_stretch, debias_overlap=debias_overlap, val_fraction=val_fraction, glove=glove, threads=threads,
        init=init_dir,
    )
    config.model.d_model, config.model.n_layers, config.model.dropout = d_model, layers, dropout
    config.model.bidirectional, config.model.pooling = bidirectional, pooling
    config.text.drop_end_punct = drop_end_punct
    try:
        manifest = run_training(
            train_file, out_dir, config, resume=resume, dev_file=dev_file, log=log, columns=columns,
            progress_factory=lambda total, label: Progress(total, label, unit="batch"),
        )
    except TrainingInterrupted as e:
        log(f"Error: {e}")
        sys.exit(130)
    v = manifest["validation"]
    click.echo(
        f"wrote {out_dir}: validation accuracy {v['accuracy']:.4f}, ROC-AUC {v['roc_auc']:.4f}, "
        f"tau {manifest['threshold']:.4f}, {manifest['training']['seconds']:.0f} s"
    )


@cli.command()
@click.argument("train_file", type=str)
@click.option("--out", "out_file", type=click.Path(path_type=Path), required=True, help="Teacher file to write (.npz).")
@click.option("--all-questions", is_flag=True, help="Encode every question, not only those of duplicate pairs.")
@click.option("--swaps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also make and encode this many near misses (a duplicate-pair question with one word replaced), shortest questions first, for --kd-swaps.")
@click.option("--swaps-per-question", type=click.IntRange(min=1), default=1, show_default=True, help="Near misses made of each question, at most.")
@click.option("--neighbours", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also store each duplicate-pair question's K nearest questions by the teacher that the file gives no label for, for --kd-swaps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the near misses.")
@pair_columns_option
@threads_option
def teacher(train_file, out_file, all_questions, swaps, swaps_per_question, neighbours, seed, threads, columns):
    """Encode training questions with all-MiniLM-L6-v2, for `dupfinder train --teacher`.

    Needs the 'distill' extra. The teacher is used in training only; queries never load it.

    Example: dupfinder teacher train.csv.gz --out teacher.npz
    """
    from .distill import write_teacher
    from .progress import Progress

    if out_file.suffix != ".npz":
        raise click.UsageError(f"--out must end in .npz, not {out_file.name!r}")
    if not out_file.parent.is_dir():
        raise click.ClickException(f"folder {out_file.parent} does not exist")
    set_threads(threads)
    info = write_teacher(train_file, out_file, all_questions, columns=columns, swaps=swaps, swaps_per_question=swaps_per_question, neighbours=neighbours, seed=seed, log=log,
                         progress_factory=lambda total, label: Progress(total, label, unit="question"))
    near = f" and {info['swaps']:,} near misses" if swaps else ""
    near += f" and {info['neighbours']:,} teacher neighbours" if neighbours else ""
    click.echo(f"wrote {out_file}: {info['questions']:,} questions{near}, {info['dim']}-d, {info['seconds']:.0f} s ({info['teacher']})")


@cli.command("extend-vocab")
@click.argument("model_dir", type=click.Path(path_type=Path), required=False)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Model directory to write.")
@click.option("--words", type=click.IntRange(min=1), default=80_000, show_default=True, help="GloVe words to add, most frequent first.")
def extend_vocab(model_dir, out_dir, words):
    """Give a trained model GloVe's words that its training file lacked, without retraining.

    Words outside the vocabulary otherwise all read as <unk>. The new words' vectors come from a
    linear map, fitted on the words the model and GloVe share; known words keep theirs, and so does
    tau. MODEL_DIR defaults to the shipped model. Needs the 'glove' extra.

    Example: dupfinder extend-vocab models/mine --out models/mine-plus --words 80000
    """
    from .extend import extend_vocab as run

    check_out_dir(out_dir)
    info = run(model_dir, out_dir, words, log=log)
    click.echo(f"wrote {out_dir}: {info['source']['vocabulary']:,} + {info['words_added']:,} words")


@cli.command()
@click.argument("pairs_file", type=str)
@model_option
@threshold_option
@click.option("--unseen-from", type=str, default=None, help="Also report pairs whose questions do not occur in this (training) file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pair_columns_option
@threads_option
def evaluate(pairs_file, model_dir, threshold, unseen_from, as_json, threads, columns):
    """Accuracy, precision, recall, F1 and ROC-AUC of a model on labeled pairs, at its tau.

    Example: dupfinder evaluate dev.csv --unseen-from train.csv.gz
    """
    from .pairs_eval import evaluate_pairs

    encoder, pairs = load_model_and_pairs(model_dir, pairs_file, threads, columns)
    result = evaluate_pairs(encoder, pairs, threshold, unseen_from, columns)
    result["model"] = str(encoder.path)
    if as_json:
        click.echo(json.dumps(result))
        return
    for title, m in (("all pairs", result), ("unseen pairs", result.get("unseen"))):
        if m is None:
            continue
        c = m["confusion"]
        click.echo(
            f"{title}: {m['pairs']:,} pairs at tau {m['threshold']:.4f}\n"
            f"  accuracy {m['accuracy']:.4f}  precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
            f"F1 {m['f1']:.4f}  ROC-AUC {m['roc_auc']:.4f}\n"
            f"  confusion: {c['tp']:,} true dup, {c['fp']:,} false dup, {c['fn']:,} missed dup, {c['tn']:,} true non-dup"
        )


@cli.command()
@click.argument("pairs_file", type=str)
@model_option
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.90, show_default=True,
              help="Also find the lowest tau whose precision reaches this.")
@click.option("--balanced/--plain", default=True, show_default=True,
              help="Weigh duplicates and non-duplicates equally when maximizing accuracy, so tau does not follow the share of duplicates in PAIRS_FILE.")
@click.option("--write", "write_choice", type=click.Choice(["accuracy", "precision"]), default=None,
              help="Write that tau (best accuracy, or the target precision's) into the model's manifest.json.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pair_columns_option
@threads_option
def calibrate(pairs_file, model_dir, target_precision, balanced, write_choice, as_json, threads, columns):
    """Threshold advice from labeled pairs: the tau of best accuracy and the tau reaching a target precision.

    Calibrate on held-out pairs, not on the pairs you report results on. --write changes only the
    threshold and calibration entries of the model's manifest.

    Example: dupfinder calibrate val.csv --model models/mine --target-precision 0.95 --write precision
    """
    from .calibrate import calibrate_model, calibration_record, write_threshold

    if write_choice and model_dir is None:
        raise click.UsageError("--write needs --model DIR: the shipped model is part of the installation; copy it and calibrate the copy")
    encoder, pairs = load_model_and_pairs(model_dir, pairs_file, threads, columns)
    advice = calibrate_model(encoder, pairs, target_precision, balanced)
    advice["model"] = str(encoder.path)
    if write_choice:
        record = calibration_record(advice, write_choice, pairs_file)
        write_threshold(encoder.path, record)
        advice["written"] = {"threshold": record["threshold"], "previous": encoder.threshold, "manifest": str(encoder.path / "manifest.json")}
    if as_json:
        click.echo(json.dumps(advice))
        return

    def line(title, m):
        return (f"{title}: tau {m['threshold']:.4f}  accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}  "
                f"precision {m['precision']:.4f}  recall {m['recall']:.4f}  F1 {m['f1']:.4f}")

    click.echo(f"{pairs_file}: {advice['pairs']:,} pairs, {advice['duplicates']:,} duplicates; model {encoder.path}")
    click.echo(line("best " + ("balanced accuracy" if balanced else "accuracy"), advice["best_accuracy"]))
    if advice["at_precision"] is None:
        click.echo(f"precision >= {target_precision:g}: not reached (best {advice['max_precision']:.4f})")
    else:
        click.echo(line(f"precision >= {target_precision:g}", advice["at_precision"]))
    click.echo(line("current", advice["current"]))
    if write_choice:
        w = advice["written"]
        click.echo(f"wrote tau {w['threshold']:.4f} (was {w['previous']:.4f}) into {w['manifest']}")


@cli.command()
@click.argument("question1")
@click.argument("question2")
@model_option
@threshold_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def similarity(question1, question2, model_dir, threshold, as_json):
    """Cosine similarity of two questions and whether they are duplicates at tau.

    Example: dupfinder similarity "How old are you?" "What is your age?"
    """
    from .encode import load_model

    for q in (question1, question2):
        if not q.strip():
            raise click.BadParameter("questions must not be empty")
    encoder = load_model(model_dir)
    tau = encoder.threshold if threshold is None else threshold
    score = encoder.similarity(question1, question2)
    duplicate = score > tau
    if as_json:
        click.echo(json.dumps({"score": score, "threshold": tau, "duplicate": duplicate}))
    else:
        click.echo(f"{score:.4f}  {'duplicate' if duplicate else 'not duplicate'} (tau {tau:.4f})")


# ---------------------------------------------------------------- the question index (issue 3)


def index_option(f):
    return click.option(
        "--index", "index_dir", type=click.Path(path_type=Path), default=None,
        help="Index directory (default: $DUPFINDER_INDEX, else $DUPFINDER_HOME/indexes/default, else ./indexes/default).",
    )(f)


def input_column_options(f):
    f = click.option("--id-column", default=None, help="Id column of a CSV/TSV (default: id, qid or question_id if present).")(f)
    return click.option("--text-column", default=None, help="Question column of a CSV/TSV (default: question, text, title or body).")(f)


def encoding_progress(label: str):
    from .progress import Progress

    return lambda total: Progress(total, label, unit="q")


@cli.command("index")
@click.argument("files", nargs=-1, required=True)
@index_option
@model_option
@click.option("--kind", type=click.Choice(["flat", "hnsw"]), default=None,
              help="flat: exact search (the default). hnsw: approximate graph search for large corpora. Chosen when the index is created.")
@input_column_options
@threads_option
def index_cmd(files, index_dir, model_dir, kind, text_column, id_column, threads):
    """Add the questions of FILES to an index, creating it if needed.

    FILES are Quora pairs files (unique questions by qid1/qid2), CSV/TSV files with a question
    column and an optional id column, or plain text (one question per line); .gz and - (stdin)
    work too. Questions already in the index (same id or same normalized text) and empty ones are
    skipped and counted. An existing index keeps its own model; --model must then be that model.

    Example: dupfinder index questions.csv more.txt.gz --index indexes/mine
    """
    from .index import add_questions, check_kind, default_index_dir, encoder_for_writing, questions_from_files

    directory = index_dir or default_index_dir()
    check_kind(directory, kind)
    questions = questions_from_files(files, text_column, id_column, log=log)  # all files read before the index is touched
    set_threads(threads)
    encoder = encoder_for_writing(directory, model_dir)
    report = add_questions(directory, encoder, questions, kind=kind, progress_factory=encoding_progress("encoding"))
    click.echo(report.summary(directory))


@cli.command()
@click.argument("question", required=False)
@index_option
@click.option("-k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours per question.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Cosine at or above which a neighbour is a duplicate (default: the index model's tau).")
@click.option("--file", "query_file", type=str, default=None,
              help="Answer every question of this file (same formats as index) as JSON lines.")
@input_column_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with --file, output is always JSON lines).")
@click.option("--ef-search", type=click.IntRange(min=1), default=None,
              help="HNSW indexes: candidates per query, more for recall, fewer for speed (default: as recorded at build).")
@model_option
@threads_option
def query(question, index_dir, k, threshold, query_file, text_column, id_column, as_json, ef_search, model_dir, threads):
    """The k questions of the index nearest to QUESTION, with their cosine, marking duplicates.

    The question is encoded with the model that built the index. With no index yet at the
    default place, one is first built from the demo corpus shipped with dupfinder (real Quora
    questions). With --file, writes one JSON object per line: {"id", "text", "hits": [{"id",
    "text", "score", "duplicate"}, ...]}, best hit first. One QUESTION runs on one thread unless
    --threads says otherwise.

    Example: dupfinder query "How old are you?" -k 5
    """
    from .index import MANIFEST, build_demo_index, default_index_dir, open_with_model, outdated_demo_index, rebuild_demo_index
    from .search import query as run_query

    if (question is None) == (query_file is None):
        raise click.UsageError("give either a QUESTION or --file FILE")
    if question is not None and not question.strip():
        raise click.BadParameter("the question must not be empty", param_hint="QUESTION")
    directory = index_dir or default_index_dir()
    demo_home = index_dir is None and not os.environ.get("DUPFINDER_INDEX")  # the default place, where the demo lives
    if demo_home and not (directory / MANIFEST).exists():
        from .encode import load_model

        log(f"no index at {directory} yet: building it from the demo corpus shipped with dupfinder")
        report = build_demo_index(directory, load_model(model_dir), progress_factory=encoding_progress("indexing demo"))
        log(report.summary(directory))
    elif demo_home and model_dir is None and outdated_demo_index(directory):
        from .encode import load_model

        log(f"{directory} holds the demo corpus indexed by an earlier shipped model: rebuilding it with this one")
        report = rebuild_demo_index(directory, load_model(), progress_factory=encoding_progress("indexing demo"))
        log(report.summary(directory))
    index, encoder = open_with_model(directory, model_dir)
    if ef_search is not None:
        try:
            index.ef_search = ef_search
        except ValueError:  # a flat index (IntRange already refused values below 1)
            index.close()
            raise click.UsageError(f"--ef-search applies to HNSW indexes; {directory} is {index.kind}") from None
    # one question gains nothing from more threads and, on a busy machine, loses a lot
    set_threads(threads or (1 if question is not None else None))
    tau = encoder.threshold if threshold is None else threshold
    with index:
        if query_file is not None:
            from .data import load_questions

            qs = load_questions(query_file, text_column=text_column, id_column=id_column)
            keep = [i for i in range(len(qs)) if qs.ok[i]]
            for start in range(0, len(keep), 4096):  # bounded memory for big files
                chunk = keep[start : start + 4096]
                results = run_query(index, encoder, [qs.texts[i] for i in chunk], k=k, threshold=tau)
                for i, hits in zip(chunk, results):
                    click.echo(json.dumps({"id": qs.ids[i], "text": qs.texts[i], "hits": [h.to_dict() for h in hits]}))
            log(qs.report.summary())
            return
        hits = run_query(index, encoder, [question], k=k, threshold=tau)[0]
    if as_json:
        click.echo(json.dumps({"query": question, "threshold": tau, "hits": [h.to_dict() for h in hits]}))
        return
    for h in hits:
        click.echo(f"{h.score:7.4f}  {'DUPLICATE' if h.duplicate else '         '}  [{h.id}] {h.text}")
    n_dup = sum(h.duplicate for h in hits)
    if n_dup:
        click.echo(f"{n_dup} duplicate{'s' if n_dup > 1 else ''} at tau {tau:.4f}")
    elif hits:
        click.echo(f"No duplicate: the best match scores {hits[0].score:.4f}, below tau {tau:.4f}")
    else:
        click.echo("No duplicate: the index is empty")


@cli.command()
@click.argument("ids", nargs=-1, required=True)
@index_option
def remove(ids, index_dir):
    """Delete questions by their id (the id from your file; the internal id for questions without one).

    All or nothing: if any ID is not in the index, nothing is removed.

    Example: dupfinder remove 42 q-17 --index indexes/mine
    """
    from .index import default_index_dir, remove_questions

    directory = index_dir or default_index_dir()
    report = remove_questions(directory, list(ids))
    click.echo(f"removed {len(report.removed):,} from {directory}; {report.count:,} questions left")


@cli.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(index_dir, as_json):
    """Count, model, kind, dimension and size on disk of an index.

    Example: dupfinder info --index indexes/mine
    """
    from .index import QuestionIndex, default_index_dir

    directory = index_dir or default_index_dir()
    with QuestionIndex.open(directory) as index:
        m = index.manifest
        result = {
            "index": str(directory), "count": index.count, "kind": index.kind, "metric": m.get("metric"),
            "dimension": index.dim, "model": m["model"]["path"], "model_fingerprint": m["model"]["fingerprint"],
            "threshold": index.threshold, "size_bytes": index.size_bytes(), "generation": m["generation"],
            "created": m.get("created"), "updated": m.get("updated"), "sources": index.sources(),
        }
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"index      {result['index']}\n"
        f"questions  {result['count']:,}\n"
        f"kind       {result['kind']} ({result['metric']})\n"
        f"dimension  {result['dimension']}\n"
        f"model      {result['model']} ({result['model_fingerprint']}, tau {result['threshold']:.4f})\n"
        f"size       {result['size_bytes'] / 1e6:,.1f} MB\n"
        f"updated    {result['updated']}"
    )
    sources = list(result["sources"].items())
    for i, (source, n) in enumerate(sources[:5]):
        click.echo(f"{'sources' if i == 0 else '':<10} {source or '(none)'} ({n:,})")
    if len(sources) > 5:
        click.echo(f"{'':<10} and {len(sources) - 5:,} more")


# ---------------------------------------------------------------- batch dedup (issue 4)


@cli.command()
@click.argument("input_file", metavar="INPUT", type=str)
@click.option("-o", "--output", required=True, type=str, help="CSV file to write (.tsv: tab-separated, .gz: compressed, -: stdout).")
@model_option
@threshold_option
@click.option("--text-column", default=None, help="Question column of a CSV/TSV (default: question, text, title or body).")
@click.option("--id-column", default=None, help="Id column of a CSV/TSV (default: id, qid or question_id if present).")
@click.option("--keep-canonical", is_flag=True, help="Write only the canonical row of each cluster: one question per meaning.")
@click.option("--no-guard", is_flag=True, help="Plain union-find, which chains A~B~C into one cluster (for comparison).")
@click.option("--against", "against_dir", type=click.Path(path_type=Path), default=None,
              help="Also mark rows that duplicate a question already in this index (its id and score); uses the index's model.")
@click.option("-k", "neighbours", type=click.IntRange(min=1), default=16, show_default=True, help="Nearest neighbours searched per question.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@threads_option
def dedup(input_file, output, model_dir, threshold, text_column, id_column, keep_canonical, no_guard, against_dir,
          neighbours, force, as_json, threads):
    """Find the duplicates within a file of questions; write every row back with its cluster.

    INPUT is read as `index` reads it: a Quora pairs file (its unique questions), a CSV/TSV with a
    question column and an optional id column, or plain text; .gz and - (stdin) work too. Each row
    gets cluster_id, canonical_id (the id, else the row number, of the cluster's representative),
    is_canonical (1/0) and score (cosine with the canonical). Rows with empty text are kept with
    those columns empty. Questions join a cluster only if their cosine with its canonical reaches
    the threshold, so unrelated questions are not chained together through intermediate ones.
    --against INDEX adds index_match_id and index_match_score: the nearest indexed question when
    it reaches the threshold, to screen new questions before adding them.

    Example: dupfinder dedup questions.csv -o deduped.csv --keep-canonical
    """
    from .data import load_questions
    from .dedup import DedupConfig, check_columns, check_output, match_labels, output_rows, summary, write_table
    from .dedup import dedup as run_dedup
    from .encode import load_model
    from .progress import Progress

    import time

    started = time.perf_counter()
    check_output(output, force)
    questions = load_questions(input_file, text_column, id_column)
    check_columns(questions.header, against=against_dir is not None)
    set_threads(threads)
    if threads:
        import faiss

        faiss.omp_set_num_threads(threads)
    index, labels = None, None
    if against_dir is not None:
        from .index import open_with_model

        index, encoder = open_with_model(against_dir, model_dir)
    else:
        encoder = load_model(model_dir)
    tau = encoder.threshold if threshold is None else threshold
    config = DedupConfig(threshold=tau, guard=not no_guard, k=neighbours)
    try:
        result = run_dedup(encoder, questions.texts, questions.ok, config, against=index,
                           progress_factory=lambda total, label: Progress(total, label, unit="q"))
        if index is not None:
            labels = match_labels(index, result.match)
    finally:
        if index is not None:
            index.close()
    header, rows = output_rows(questions.header, questions.rows, questions.ids, result, keep_canonical, labels)
    written = write_table(output, header, rows, stdout=sys.stdout)
    info = summary(result, questions.report) | {
        "input": input_file, "output": output, "rows_written": written, "threshold": tau, "guard": not no_guard,
        "model": str(encoder.path), "seconds_total": round(time.perf_counter() - started, 3),
    } | ({"against": str(against_dir)} if against_dir is not None else {})
    if as_json:
        click.echo(json.dumps(info), err=output == "-")
        return
    lines = [
        f"read {questions.report.summary()}",
        f"{info['rows_deduplicated']:,} of {info['rows']:,} rows deduplicated: {info['clusters']:,} clusters "
        f"({info['clusters_with_duplicates']:,} with duplicates, largest {info['largest_cluster']:,}); "
        f"{info['duplicate_rows']:,} rows are duplicates",
    ]
    if against_dir is not None:
        lines.append(f"{info['rows_matching_index']:,} rows duplicate a question in {against_dir}")
    lines.append(f"wrote {written:,} rows to {output} (tau {tau:.4f}, {'guarded' if not no_guard else 'plain union-find'}, "
                 f"{info['seconds_total']:.1f} s)")
    log("\n".join(lines))
