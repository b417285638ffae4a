"""Commands that make models: build-model (every stage of a recipe), and its stages train, teacher,
extend-vocab. They need the train extra (torch)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dupfinder.cli.main import cli
from dupfinder.cli.options import check_out_dir, log, pair_columns_option, threads_option
from dupfinder.engine import set_threads
from dupfinder.train.recipe import TrainConfig, read_stages, resolve


DEFAULTS = TrainConfig()


@cli.command()
@click.argument("train_file", type=str)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Model directory to write.")
@click.option("--recipe", "recipe_file", type=click.Path(path_type=Path), default=None, metavar="FILE.toml",
              help="TOML file of training settings (loss, architecture, text, teacher); see recipes/. The options below override it.")
@click.option("--dev", "dev_file", type=str, default=None, help="Pairs file scored after each epoch, for the log only.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt with its recorded settings.")
@click.option("--init", "init_dir", type=str, default=None, metavar="DIR",
              help="Start from this model directory (fine-tuning): its network, vocabulary and text settings replace the recipe's.")
@click.option("--teacher", type=str, default=None, metavar="FILE",
              help="Teacher file from `dupfinder teacher --neighbours K`, for a recipe that sets kd_swaps.")
@click.option("--seed", type=int, default=None, help=f"Seeds the split, the batch order and the weights. [default: the recipe's, else {DEFAULTS.seed}]")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"[default: the recipe's, else {DEFAULTS.epochs}]")
@click.option("--batch-size", type=click.IntRange(min=2), default=None,
              help=f"Duplicate pairs per batch. [default: the recipe's, else {DEFAULTS.batch_size}]")
@click.option("--threads", type=click.IntRange(min=1), default=None, help=f"Torch threads. [default: the recipe's, else {DEFAULTS.threads}]")
@pair_columns_option
def train(train_file, out_dir, recipe_file, dev_file, resume, init_dir, teacher, seed, epochs, batch_size, threads, columns):
    """Train an encoder on a pairs file (id,qid1,qid2,question1,question2,is_duplicate).

    Writes a model directory with config, vocabulary, weights and a manifest holding the calibrated
    threshold, validation metrics and the training settings. Settings come from the defaults, then
    --recipe, then the options given here. Ctrl-C keeps the last checkpoint; --resume continues it.

    \b
    Example (the shipped model; its recipe says how to make teacher.npz):
      dupfinder train train.csv.gz --out models/mine --dev dev.csv --recipe recipes/shipped.toml --teacher teacher.npz
    """
    check_out_dir(out_dir)
    config = None  # with --resume, the checkpoint's
    if resume:
        given = {"--recipe": recipe_file, "--init": init_dir, "--teacher": teacher, "--seed": seed, "--epochs": epochs,
                 "--batch-size": batch_size, "--threads": threads}
        if extra := [name for name, value in given.items() if value is not None]:
            raise click.UsageError(f"--resume continues OUT's checkpoint with its recorded settings; drop {', '.join(extra)}")
    else:
        if (out_dir / "manifest.json").exists():
            raise click.ClickException(f"{out_dir} already holds a model; choose another --out or delete it first")
        config = resolve(recipe_file, {"seed": seed, "epochs": epochs, "batch_size": batch_size, "threads": threads,
                                       "teacher": teacher, "init": init_dir})
        if recipe_file is not None and (later := [name for name, value in vars(read_stages(recipe_file)).items() if value is not None]):
            log(f"train trains the encoder only; the recipe's {', '.join(f'[{n}]' for n in later)} run with `dupfinder build-model`")

    from dupfinder.progress import Progress
    from dupfinder.train.loop import TrainingInterrupted, train as run_training

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


@cli.command("build-model")
@click.argument("train_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--recipe", "recipe_file", type=click.Path(path_type=Path), required=True, metavar="FILE.toml",
              help="The recipe: the encoder's settings, and sections for the other stages; see recipes/shipped.toml.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Model folder to write; OUT/work keeps the intermediate results.")
@click.option("--dev", "dev_file", type=str, default=None, help="Pairs file scored after each encoder epoch, for the log only.")
@click.option("--teacher", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="A teacher file from `dupfinder teacher`, used instead of running the recipe's [teacher] stage.")
def build_model(train_file, recipe_file, out_dir, dev_file, teacher):
    """Train every stage of a model from a recipe and a pairs file, in order, into one folder.

    The stages: [teacher] (all-MiniLM-L6-v2 neighbours, the 'distill' extra), the encoder (the
    recipe's top-level settings), [vocabulary] (GloVe words added), [verdict] (the pair head) and
    [verifier] (the interaction verifier over it); a section the recipe leaves out is a stage that
    does not run. Intermediate results stay in OUT/work, so the same command run again after an
    interruption skips the stages already complete. A stage's missing package or data is reported
    before any stage starts. Prints each stage's time.

    \b
    Example (the shipped model; WordNet's files as recipes/shipped.toml says):
      NLTK_DATA=nltk_data dupfinder build-model train.csv.gz --recipe recipes/shipped.toml --out models/mine --dev dev.csv
    """
    from dupfinder.progress import Progress
    from dupfinder.train.loop import TrainingInterrupted
    from dupfinder.train.pipeline import build_model as run

    check_out_dir(out_dir)
    try:
        results = run(train_file, out_dir, recipe_file, teacher_file=teacher, dev_file=dev_file, log=log,
                      progress_factory=lambda total, label, unit: Progress(total, label, unit=unit))
    except (TrainingInterrupted, KeyboardInterrupt):
        log("Error: interrupted; run the same command again to continue from the last complete stage")
        sys.exit(130)
    for r in results:
        took = "" if r.earlier is None else f" ({r.earlier:.0f} s then)"
        click.echo(f"{r.name:<10} {r.seconds:>8.0f} s  {r.note}" if r.ran else f"{r.name:<10} {'-':>8}    already complete{took}")
    click.echo(f"wrote {out_dir}: {', '.join(r.name for r in results)} in {sum(r.seconds for r in results):.0f} s; "
               f"{out_dir / 'work'} holds the intermediate files (not needed to use the model)")


@cli.command()
@click.argument("train_file", type=str)
@click.option("--out", "out_file", type=click.Path(path_type=Path), required=True, help="Teacher file to write (.npz).")
@click.option("--neighbours", type=click.IntRange(min=1), default=3, show_default=True,
              help="Each duplicate-pair question's K nearest questions by the teacher that the file gives no label for; "
                   "what `train` learns from with a recipe's kd_swaps.")
@click.option("--all-questions", is_flag=True, help="Encode every question, not only those of duplicate pairs.")
@pair_columns_option
@threads_option
def teacher(train_file, out_file, neighbours, all_questions, threads, columns):
    """Encode training questions with all-MiniLM-L6-v2, for `dupfinder train --teacher`.

    Needs the 'distill' extra. The teacher is used in training only; queries never load it.

    Example: dupfinder teacher train.csv.gz --out teacher.npz --neighbours 3
    """
    from dupfinder.train.teacher import write_teacher
    from dupfinder.progress import Progress

    if out_file.suffix != ".npz":
        raise click.UsageError(f"--out must end in .npz, not {out_file.name!r}")
    if not out_file.parent.is_dir():
        raise click.ClickException(f"folder {out_file.parent} does not exist")
    set_threads(threads)
    info = write_teacher(train_file, out_file, all_questions, columns=columns, neighbours=neighbours, log=log,
                         progress_factory=lambda total, label: Progress(total, label, unit="question"))
    click.echo(f"wrote {out_file}: {info['questions']:,} questions and {info['neighbours']:,} teacher neighbours, "
               f"{info['dim']}-d, {info['seconds']:.0f} s ({info['teacher']})")


@cli.command("extend-vocab")
@click.argument("model_dir", type=click.Path(path_type=Path), required=False)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Model directory to write.")
@click.option("--words", type=click.IntRange(min=1), default=80_000, show_default=True, help="GloVe words to add, most frequent first.")
def extend_vocab(model_dir, out_dir, words):
    """Give a trained model GloVe's words that its training file lacked, without retraining.

    Words outside the vocabulary otherwise all read as <unk>. The new words' vectors come from a
    linear map, fitted on the words the model and GloVe share; known words keep theirs, and so does
    tau. MODEL_DIR defaults to the shipped model. Needs the 'train' extra (GloVe 6B 50d).

    Example: dupfinder extend-vocab models/mine --out models/mine-plus --words 80000
    """
    from dupfinder.model.extend import extend_vocab as run

    check_out_dir(out_dir)
    info = run(model_dir, out_dir, words, log=log)
    click.echo(f"wrote {out_dir}: {info['source']['vocabulary']:,} + {info['words_added']:,} words")


@cli.command("train-subwords")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--buckets", type=click.IntRange(min=1), default=65536, show_default=True,
              help="Rows of the hashed character n-gram table (50 half-precision numbers each).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Passes over the vocabulary.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the table and the held-out words.")
@threads_option
def train_subwords(model_dir, buckets, epochs, seed, threads):
    """Give a model's unknown words vectors from their spelling, in place, without retraining.

    Words outside the vocabulary otherwise all read as <unk>, so "How do I install Zorblax?" and
    "How do I install Quibbit?" get one vector. This fits a table of hashed character n-grams
    (fastText's, 3 to 5 characters) whose mean rows give back the vocabulary's own word vectors,
    and adds it to MODEL_DIR; an unknown word then reads as its n-grams' mean. Known words keep their
    vectors. The model's fingerprint changes: indexes built with it before must be rebuilt. Needs
    the 'train' extra (PyTorch).

    Example: dupfinder train-subwords models/mine
    """
    from dupfinder.model.encoder import require_torch
    from dupfinder.model.subwords import add_subwords

    require_torch("train-subwords")
    set_threads(threads)
    entry = add_subwords(model_dir, buckets=buckets, epochs=epochs, seed=seed, log=log)
    click.echo(f"added {entry['file']} to {model_dir}: {buckets:,} n-gram rows; held-out words' median cosine to their "
               f"learned vectors {entry['median_cosine']} (<unk>: {entry['unk_median_cosine']})")
