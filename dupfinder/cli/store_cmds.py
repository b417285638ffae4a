"""Commands over an index: index, query, remove, info, and dedup (with --against)."""

from __future__ import annotations

import sys
import time

import click

from dupfinder.cli.main import cli
from dupfinder.cli.options import (index_option, input_column_options, json_option, log, model_option, nonempty, progress, read_stdin,
                                   threads_option, threshold_option, verdict_option)
from dupfinder.cli.output import dumps, emit_json, hits_table, info_table, rule_text
from dupfinder.dedup_linkage import LINKAGES
from dupfinder.engine import Engine, load_encoder, read_questions, set_threads


@cli.command("index")
@click.argument("files", nargs=-1, required=True)
@index_option
@model_option
@click.option("--kind", type=click.Choice(["flat", "hnsw"]), default=None,
              help="flat: exact search (a folder's default). hnsw: approximate graph search for large corpora (the PostgreSQL and Milvus default). Chosen when the index is created.")
@click.option("--upsert", is_flag=True, help="Replace the text of ids already in the index (else a different text for a stored id is an error).")
@input_column_options
@threads_option
def index_cmd(files, index_dir, model_dir, kind, upsert, text_column, id_column, threads):
    """Add the questions of FILES to an index, creating it if needed.

    FILES are Quora pairs files (unique questions by qid1/qid2), CSV/TSV or JSON lines files with
    a question column and an optional id column, or plain text (one question per line); .gz and - (stdin)
    work too. Questions already in the index (same id and text, or same normalized text) and empty
    ones are skipped and counted; an id already in the index with another text is an error unless
    --upsert. Each run is one transaction: all of it is added, or none. An existing index keeps its
    own model; --model must then be that model.

    Example: dupfinder index questions.csv more.txt.gz --index indexes/mine
    """
    set_threads(threads)
    # opened once, before the files are read: a wrong --index, --kind or --model fails first, and
    # nothing is written until every file has been read
    with Engine.for_writing(index_dir, model_dir, kind) as engine:
        questions = read_questions(files, text_column, id_column, log=log)
        report = engine.add(questions, progress(), upsert=upsert)
        click.echo(report.summary(engine.store.location))


def _default() -> str:
    from dupfinder.engine import default_location

    return default_location()


@cli.command()
@click.argument("question", required=False)
@index_option
@click.option("-k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours per question.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Score at or above which a neighbour is a duplicate: the pair head's probability, or the cosine under "
                   "--verdict cosine (default: the index model's calibrated threshold).")
@click.option("--file", "query_file", type=str, default=None,
              help="Answer every question of this file (same formats as index) as JSON lines.")
@input_column_options
@json_option
@click.option("--ef-search", type=click.IntRange(min=1), default=None,
              help="HNSW indexes: candidates per query, more for recall, fewer for speed (default: as recorded at build).")
@model_option
@verdict_option
@threads_option
def query(question, index_dir, k, threshold, query_file, text_column, id_column, as_json, ef_search, model_dir, verdict, threads):
    """The k questions of the index nearest to QUESTION, with their cosine, marking duplicates.

    Duplicates are decided by the model's pair head where it has one (each hit's verdict_score is
    its probability), else, and with --verdict cosine, by the cosine against tau.

    QUESTION - reads the question from stdin (several lines: each a question, answered as JSON
    lines). The question is encoded with the model that built the index. With no index yet at the
    default place, one is first built from the demo corpus shipped with dupfinder (real Quora
    questions). With --file, writes one JSON object per line: {"id", "text", "hits": [{"id",
    "text", "score", "duplicate"}, ...]}, best hit first.

    Example: dupfinder query "How old are you?" -k 5
    """
    if (question is None) == (query_file is None):
        raise click.UsageError("give either a QUESTION or --file FILE")
    texts = None
    if question == "-":
        texts = [line.strip() for line in read_stdin().splitlines() if line.strip()]
        if not texts:
            raise click.BadParameter("stdin held no question", param_hint="QUESTION")
        question = texts[0] if len(texts) == 1 else None
    elif question is not None:
        nonempty(question, "QUESTION")
    # one question gains nothing from more threads and, on a busy machine, loses a lot
    set_threads(threads or (1 if question is not None else None))
    with Engine.open(index_dir, model_dir, threshold, log=log, progress=progress("q"), verdict=verdict) as engine:
        if ef_search is not None:
            if engine.store.kind != "hnsw":
                raise click.UsageError(f"--ef-search applies to HNSW indexes; {engine.store.location} is {engine.store.kind}")
            engine.store.ef_search = ef_search
        if question is None:
            _answer_many(engine, texts, query_file, text_column, id_column, k)
            return
        hits = engine.query([question], k)[0]
        if as_json:
            emit_json({"query": question, "threshold": engine.threshold, "verdict": engine.verdict.kind, "hits": [h.to_dict() for h in hits]})
        else:
            click.echo(hits_table(hits, engine.threshold))


def _answer_many(engine: Engine, texts, query_file, text_column, id_column, k) -> None:
    """JSON lines, one per question, from stdin lines or a file."""
    if texts is not None:
        ids = [None] * len(texts)
    else:
        from dupfinder.io import load_questions

        qs = load_questions(query_file, text_column=text_column, id_column=id_column)
        keep = [i for i in range(len(qs)) if qs.ok[i]]
        ids, texts = [qs.ids[i] for i in keep], [qs.texts[i] for i in keep]
    for i, text, hits in zip(ids, texts, engine.query_many(texts, k)):
        click.echo(dumps({"id": i, "text": text, "hits": [h.to_dict() for h in hits]}))
    if query_file is not None:
        log(qs.report.summary())


@cli.command()
@click.argument("ids", nargs=-1, required=True)
@index_option
def remove(ids, index_dir):
    """Delete questions by their id (the id from your file; the internal id for questions without one).

    All or nothing: if any ID is not in the index, nothing is removed.

    Example: dupfinder remove 42 q-17 --index indexes/mine
    """
    from dupfinder.store import open_store

    with open_store(index_dir or _default()) as store:
        report = store.remove(list(ids))
    click.echo(f"removed {len(report.removed):,} from {store.location}; {report.count:,} questions left")


@cli.command()
@index_option
@model_option
@json_option
def info(index_dir, model_dir, as_json):
    """Count, model, threshold, kind, dimension and size on disk of an index.

    Example: dupfinder info --index indexes/mine
    """
    from dupfinder.engine import store_model
    from dupfinder.errors import IndexStoreError
    from dupfinder.store import open_store

    with open_store(index_dir or _default()) as store:
        try:
            result = Engine(store_model(store, model_dir), store).info()
        except IndexStoreError:
            if model_dir is not None:
                raise
            # built by a model this install cannot load (or ships no more): still described, as the
            # error that sent the user here promised, with the threshold recorded at build time
            built = store.model
            result = store.info() | {"model": built["path"], "model_fingerprint": built["fingerprint"],
                                     "threshold": float(built["threshold"]), "threshold_source": "recorded"}
    if as_json:
        emit_json(result)
    else:
        click.echo(info_table(result))


@cli.command()
@click.argument("input_file", metavar="INPUT", type=str)
@click.option("-o", "--output", required=True, type=str, help="CSV file to write (.tsv: tab-separated, .gz: compressed, -: stdout).")
@model_option
@threshold_option
@verdict_option
@input_column_options
@click.option("--keep-canonical", is_flag=True, help="Write only the canonical row of each cluster: one question per meaning.")
@click.option("--linkage", type=click.Choice(LINKAGES), default="complete", show_default=True,
              help="complete: every question of a cluster is a duplicate of every other; guard: of the cluster's canonical "
                   "(looser: two members may differ); single: plain union-find, which chains A~B~C (for comparison).")
@click.option("--no-guard", is_flag=True, hidden=True, help="The same as --linkage single.")
@click.option("--against", "against_dir", type=str, default=None,
              help="Also mark rows that duplicate a question already in this index (its id and score); uses the index's model.")
@click.option("-k", "neighbours", type=click.IntRange(min=1), default=16, show_default=True, help="Nearest neighbours searched per question.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@json_option
@threads_option
def dedup(input_file, output, model_dir, threshold, verdict, text_column, id_column, keep_canonical, linkage, no_guard,
          against_dir, neighbours, force, as_json, threads):
    """Find the duplicates within a file of questions; write every row back with its cluster.

    INPUT is read as `index` reads it: a Quora pairs file (its unique questions), a CSV/TSV or JSON
    lines file with a question column and an optional id column, or plain text; .gz and - (stdin) work too. Each row
    gets cluster_id, canonical_id (the id, else the row number, of the cluster's representative),
    is_canonical (1/0) and score (cosine with the canonical). Rows with empty text are kept with
    those columns empty. Two clusters merge only if every question of one is a duplicate of every
    question of the other (the verdict in force), so unrelated questions are not chained together
    through intermediate ones; --linkage guard asks only each cluster's canonical.
    --against INDEX adds index_match_id and index_match_score: the nearest indexed question when
    it reaches the threshold, to screen new questions before adding them.

    Example: dupfinder dedup questions.csv -o deduped.csv --keep-canonical
    """
    from dupfinder.dedup_table import check_columns, output_rows, summary
    from dupfinder.io import check_output, load_questions, write_table

    started = time.perf_counter()
    linkage = "single" if no_guard else linkage
    check_output(output, force)
    questions = load_questions(input_file, text_column, id_column)
    check_columns(questions.header, against=against_dir is not None)
    set_threads(threads)
    if against_dir is not None:
        engine = Engine.open(against_dir, model_dir, threshold, verdict=verdict)
    else:
        engine = Engine(load_encoder(model_dir), threshold=threshold, verdict=verdict)
    with engine:
        result, labels = engine.dedup(questions.texts, questions.ok, neighbours, linkage, against_dir is not None, progress("q"))
    header, rows = output_rows(questions.header, questions.rows, questions.ids, result, keep_canonical, labels)
    written = write_table(output, header, rows, stdout=sys.stdout)
    info = summary(result, questions.report) | {
        "input": input_file, "output": output, "rows_written": written, "threshold": engine.threshold, "verdict": engine.verdict.kind,
        "linkage": linkage,
        "model": str(engine.encoder.path), "seconds_total": round(time.perf_counter() - started, 3),
    } | ({"against": str(against_dir)} if against_dir is not None else {})
    if as_json:
        emit_json(info, err=output == "-")
        return
    lines = [
        f"read {questions.report.summary()}",
        f"{info['rows_deduplicated']:,} of {info['rows']:,} rows deduplicated: {info['clusters']:,} clusters "
        f"({info['clusters_with_duplicates']:,} with duplicates, largest {info['largest_cluster']:,}); "
        f"{info['duplicate_rows']:,} rows are duplicates",
    ]
    if against_dir is not None:
        lines.append(f"{info['rows_matching_index']:,} rows duplicate a question in {against_dir}")
    rule = rule_text(engine.verdict.kind, engine.threshold)
    lines.append(f"wrote {written:,} rows to {output} ({rule}, {linkage} linkage, "
                 f"{info['seconds_total']:.1f} s)")
    log("\n".join(lines))
