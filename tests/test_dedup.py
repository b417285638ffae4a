"""Batch dedup: FAISS self-kNN + clustering (complete linkage, the guard, single) against an all-pairs
reference, complete linkage with a verdict scorer, output rows (input order, each row once) and every CLI error with its exit code and message."""

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.dedup import (
    DedupConfig,
    cluster,
    cluster_vectors,
    dedup,
    group_identical,
    knn_partitioned,
    neighbour_edges,
)
from dupfinder.dedup_table import output_rows
from dupfinder.errors import DupfinderError
from dupfinder.io import write_table
from dupfinder.knn import exact_search


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    """Small searches on a busy machine are many times slower with OpenMP threads waiting on each other."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def planted(n=240, d=16, n_centers=40, noise=0.45, seed=0) -> np.ndarray:
    """Unit vectors scattered around random centres: clusters, near misses and chains."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_centers, d))
    x = centers[rng.integers(0, n_centers, n)] + noise * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # (n, d)


def reference_clusters(x: np.ndarray, tau: float, linkage: str, scores: np.ndarray | None = None) -> np.ndarray:
    """The rule done the slow, obvious way: all pairs, strongest first, clusters as Python sets.
    `scores` (n, n) is the verdict on every pair (default: the cosine)."""
    n = len(x)
    sims = x @ x.T if scores is None else scores  # (n, n)
    a, b = np.triu_indices(n, 1)
    keep = sims[a, b] >= tau
    a, b, s = a[keep], b[keep], sims[a, b][keep]
    cluster_of = list(range(n))
    members = {i: {i} for i in range(n)}
    canonical = {i: i for i in range(n)}
    for e in np.lexsort((b, a, -s)):
        ci, cj = cluster_of[a[e]], cluster_of[b[e]]
        if ci == cj:
            continue
        # the larger keeps its canonical; ties: the earlier canonical
        if (len(members[cj]), -canonical[cj]) > (len(members[ci]), -canonical[ci]):
            ci, cj = cj, ci
        if linkage == "guard" and any(sims[m, canonical[ci]] < tau - 1e-5 for m in members[cj]):
            continue
        if linkage == "complete" and any(sims[m, o] < tau - 1e-5 for m in members[cj] for o in members[ci]):
            continue
        for m in members.pop(cj):
            cluster_of[m] = ci
            members[ci].add(m)
    return np.array([canonical[cluster_of[i]] for i in range(n)])


def partition(labels: np.ndarray) -> set[frozenset]:
    groups: dict = {}
    for i, c in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("linkage", ["complete", "guard", "single"])
@pytest.mark.parametrize("block_size", [1, 7, 100, 1000])
def test_matches_all_pairs_reference(linkage, block_size):
    x, tau = planted(), 0.75
    got = cluster_vectors(x, DedupConfig(threshold=tau, linkage=linkage, k=len(x), block_size=block_size))
    np.testing.assert_array_equal(got.canonical, reference_clusters(x, tau, linkage))
    assert len(partition(got.canonical)) < len(x) - 20  # the data has real clusters


def test_plain_union_find_is_connected_components():
    x, tau = planted(seed=1), 0.7
    adjacent = (x @ x.T) >= tau  # (n, n)
    labels = np.full(len(x), -1)
    for start in range(len(x)):  # breadth-first search from each unlabelled vector
        if labels[start] < 0:
            labels[start], frontier = start, [start]
            while frontier:
                reached = np.flatnonzero(adjacent[frontier].any(0) & (labels < 0))
                labels[reached], frontier = start, reached.tolist()
    got = cluster_vectors(x, DedupConfig(threshold=tau, linkage="single", k=len(x), block_size=13))
    assert partition(got.canonical) == partition(labels)


def test_guard_keeps_members_within_tau_of_their_canonical_and_splits_chains():
    x, tau = planted(seed=2, noise=0.6), 0.7
    plain = cluster_vectors(x, DedupConfig(threshold=tau, linkage="single", k=len(x)))
    guarded = cluster_vectors(x, DedupConfig(threshold=tau, linkage="guard", k=len(x)))
    own = np.einsum("ij,ij->i", x, x[guarded.canonical])
    assert (own >= tau - 1e-5).all()
    np.testing.assert_allclose(guarded.score, own, atol=1e-6)
    assert plain.score.min() < tau  # the data chains without the guard ...
    assert guarded.merges_refused > 0 and len(partition(guarded.canonical)) > len(partition(plain.canonical))
    # ... and each guarded cluster lies inside one plain cluster
    plain_of = {i: c for c in partition(plain.canonical) for i in c}
    assert all(c <= plain_of[next(iter(c))] for c in partition(guarded.canonical))


def test_complete_linkage_clusters_are_pairwise_duplicates_where_the_guard_lets_members_differ():
    x, tau = planted(seed=2, noise=0.6), 0.7
    guarded = cluster_vectors(x, DedupConfig(threshold=tau, linkage="guard", k=len(x)))
    complete = cluster_vectors(x, DedupConfig(threshold=tau, linkage="complete", k=len(x)))
    sims = x @ x.T  # (n, n)
    for c in partition(complete.canonical):
        c = sorted(c)
        assert (sims[np.ix_(c, c)] >= tau - 1e-5).all()
    assert any((sims[np.ix_(sorted(c), sorted(c))] < tau).any() for c in partition(guarded.canonical))
    assert complete.merges_refused > 0
    np.testing.assert_allclose(complete.score, np.einsum("ij,ij->i", x, x[complete.canonical]), atol=1e-6)


def test_complete_linkage_asks_a_verdict_scorer_about_pairs_that_are_not_edges():
    """A verdict that disagrees with the cosine on some pairs: clusters follow the verdict, the
    scorer is asked only about pairs at or above the cosine floor, each pair once."""
    x, tau, floor = planted(n=120, n_centers=10, seed=6, noise=0.5), 0.5, 0.6
    sims = x @ x.T  # (n, n)
    rng = np.random.default_rng(0)
    verdict = np.triu(rng.uniform(0.2, 1.0, sims.shape), 1)
    verdict = np.where(sims >= floor, verdict + verdict.T, 0.0)  # symmetric; no duplicates below the floor
    asked = []

    def scorer(u, v):
        asked.extend(zip(np.minimum(u, v).tolist(), np.maximum(u, v).tolist()))
        return verdict[u, v]

    # the candidate edges: each question's 4 nearest at or above the floor, scored by the verdict
    a, b = np.triu_indices(len(x), 1)
    near = np.argsort(-sims, 1)[:, 1:5]
    is_near = np.zeros(sims.shape, bool)
    np.put_along_axis(is_near, near, True, 1)
    keep = (sims[a, b] >= floor) & (is_near[a, b] | is_near[b, a])
    a, b = a[keep], b[keep]
    got = cluster(x, a, b, verdict[a, b], tau, "complete", scorer=scorer, floor=floor)
    clusters = partition(got.canonical)
    assert any(len(c) > 2 for c in clusters)
    for c in clusters:
        c = sorted(c)
        assert (verdict[np.ix_(c, c)] + np.eye(len(c)) >= tau).all()
    assert asked and all(sims[u, v] >= floor for u, v in asked)
    assert len(asked) == len(set(asked)) and not set(asked) & set(zip(a.tolist(), b.tolist()))
    # with every pair an edge, the result is the all-pairs reference over the verdict
    a, b = np.triu_indices(len(x), 1)
    every = cluster(x, a, b, verdict[a, b], tau, "complete", scorer=lambda u, v: verdict[u, v], floor=floor)
    np.testing.assert_array_equal(every.canonical, reference_clusters(x, tau, "complete", verdict))


def test_unknown_linkage_is_refused():
    with pytest.raises(ValueError, match="linkage must be one of"):
        cluster_vectors(planted(n=10), DedupConfig(threshold=0.5, linkage="average"))


def test_partitioned_search_with_every_list_probed_is_exact():
    x, tau = planted(n=400, seed=3), 0.75
    exact = cluster_vectors(x, DedupConfig(threshold=tau, k=12))
    full = cluster_vectors(x, DedupConfig(threshold=tau, k=12, exact_below=0, nlist=5, nprobe=5, block_size=33))
    np.testing.assert_array_equal(full.canonical, exact.canonical)
    s1, i1 = exact_search(x, x, 13, block_size=50)
    s2, i2 = knn_partitioned(x, 13, DedupConfig(threshold=tau, exact_below=0, nlist=7, nprobe=7, block_size=61))
    np.testing.assert_allclose(np.sort(s2, 1), np.sort(s1, 1), atol=1e-5)


def test_partitioned_search_with_few_probes_finds_most_near_neighbours():
    x, tau = planted(n=2000, d=16, n_centers=100, seed=5), 0.8
    config = DedupConfig(threshold=tau, k=8, exact_below=0, nprobe=2)
    a1, b1, _ = neighbour_edges(x, tau, DedupConfig(threshold=tau, k=8))
    a2, b2, s2 = neighbour_edges(x, tau, config)
    exact, approx = set(zip(a1.tolist(), b1.tolist())), set(zip(a2.tolist(), b2.tolist()))
    assert len(exact & approx) >= 0.9 * len(exact)
    np.testing.assert_allclose(s2, np.einsum("ij,ij->i", x[a2], x[b2]), atol=1e-5)  # scores are true cosines
    assert (s2 >= tau).all() and (a2 < b2).all()


def test_small_k_gives_clusters_inside_the_all_pairs_components():
    x, tau = planted(seed=4), 0.7
    full = partition(cluster_vectors(x, DedupConfig(threshold=tau, linkage="single", k=len(x))).canonical)
    of = {i: c for c in full for i in c}
    for c in partition(cluster_vectors(x, DedupConfig(threshold=tau, linkage="single", k=2)).canonical):
        assert c <= of[next(iter(c))]


def test_degenerate_sizes():
    for n in (0, 1):
        c = cluster_vectors(planted(n=max(n, 1))[:n], DedupConfig(threshold=0.5))
        assert c.canonical.tolist() == list(range(n)) and c.edges == 0


def test_group_identical_keeps_the_first_row_of_each_text():
    group, first = group_identical(["How old are you?", "Why?", "how  OLD are you?", "why?", "New"])
    assert group.tolist() == [0, 1, 0, 1, 2] and first.tolist() == [0, 1, 4]


class PlantedEncoder:
    """Known vectors for known texts: a chain A ~ B ~ C (cos 0.9 each step, A.C = 0.62) and a far D."""

    def __init__(self):
        angles = {"a": 0.0, "b": np.arccos(0.9), "c": 2 * np.arccos(0.9), "d": np.pi / 2}
        self.vectors = {t: np.array([np.cos(v), np.sin(v), 0, 0], np.float32) for t, v in angles.items()}
        self.dim, self.threshold, self.path = 4, 0.8, Path("/planted")

    def encode(self, texts, batch_size=512, progress=None):
        if progress:
            progress(len(texts))
        return np.stack([self.vectors[t.strip().lower()[0]] for t in texts]) if texts else np.zeros((0, 4), np.float32)


def test_chain_is_split_by_complete_linkage_starred_by_the_guard_and_joined_without():
    texts = ["b", "a", "", "c", "B", "d"]
    ok = np.array([bool(t) for t in texts])
    guarded = dedup(PlantedEncoder(), texts, ok, DedupConfig(threshold=0.8, linkage="guard"))
    complete = dedup(PlantedEncoder(), texts, ok, DedupConfig(threshold=0.8))
    # "b" appears twice, so its cluster is the larger one and keeps b as canonical; both a and c reach
    # tau with b, so the guard keeps all of them together with it, though a and c are 0.62 apart
    assert guarded.canonical.tolist() == [0, 0, -1, 0, 0, 5]
    # complete linkage (the default): c is a duplicate of b but not of a, so it stays out
    assert complete.canonical.tolist() == [0, 0, -1, 3, 0, 5]
    assert complete.stats["linkage"] == "complete" and complete.stats["merges_refused"] == 1
    texts = ["a", "b", "", "c", "A", "d"]
    guarded = dedup(PlantedEncoder(), texts, ok, DedupConfig(threshold=0.8, linkage="guard"))
    plain = dedup(PlantedEncoder(), texts, ok, DedupConfig(threshold=0.8, linkage="single"))
    # a (twice) and b merge first with canonical a; c reaches b but not a: the guard keeps it out
    assert guarded.canonical.tolist() == [0, 0, -1, 3, 0, 5]
    assert guarded.cluster.tolist() == [0, 0, -1, 1, 0, 2]
    assert plain.canonical.tolist() == [0, 0, -1, 0, 0, 5]
    assert plain.score[3] == pytest.approx(0.62, abs=0.01)  # the chained member is far from its canonical
    assert np.isnan(guarded.score[2]) and guarded.score[4] == pytest.approx(1.0)


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


QUESTIONS = [
    ("q7", "How old are you?"),
    ("q3", "What is your age?"),
    ("q9", ""),
    ("q1", "How do I learn Python quickly?"),
    ("q4", "how old are YOU?"),
    ("q2", "What is the capital of France?"),
    ("q8", "   "),
    ("q5", "How do I learn Python quickly?"),
    ("q6", "Which city is the capital of France?"),
]


def questions_file(tmp_path, rows=QUESTIONS, name="q.csv") -> Path:
    path = tmp_path / name
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "extra"])
        for i, (qid, text) in enumerate(rows):
            w.writerow([qid, text, f"x{i}"])
    return path


def test_cli_writes_every_row_once_in_input_order(tmp_path, tiny_model):
    out = tmp_path / "out.csv"
    r = run("dedup", questions_file(tmp_path), "-o", out, "--model", tiny_model)
    assert r.exit_code == 0, r.output
    rows = read_csv(out.read_text())
    assert rows[0] == ["id", "question", "extra", "cluster_id", "canonical_id", "is_canonical", "score"]
    body = rows[1:]
    assert [(row[0], row[1], row[2]) for row in body] == [(q, t, f"x{i}") for i, (q, t) in enumerate(QUESTIONS)]
    by_id = {row[0]: row for row in body}
    for empty in ("q9", "q8"):  # empty text: kept, not deduplicated
        assert by_id[empty][3:] == ["", "", "", ""]
    # exact repeats (after normalization) are in their first occurrence's cluster
    assert by_id["q4"][3] == by_id["q7"][3] and by_id["q4"][5] == "0" and by_id["q4"][6] == "1.0000"
    assert by_id["q5"][4] == by_id["q1"][4] and by_id["q5"][5] == "0"
    # one canonical per cluster, and it names itself; clusters numbered by first appearance
    done = [row for row in body if row[3]]
    canon_of = {row[3]: row[4] for row in done if row[5] == "1"}
    assert len(canon_of) == len({row[3] for row in done})
    assert all(row[4] == canon_of[row[3]] and by_id[row[4]][3] == row[3] for row in done)
    seen = []
    for row in done:
        if row[3] not in seen:
            seen.append(row[3])
    assert seen == [str(i) for i in range(len(seen))]
    assert "9 rows, 7 kept, 2 skipped (empty question)" in r.stderr
    assert f"wrote 9 rows to {out}" in r.stderr


def test_cli_keep_canonical_json_and_gzip_output(tmp_path, tiny_model):
    full, slim = tmp_path / "full.csv", tmp_path / "slim.tsv.gz"
    assert run("dedup", questions_file(tmp_path), "-o", full, "--model", tiny_model).exit_code == 0
    r = run("dedup", questions_file(tmp_path), "-o", slim, "--model", tiny_model, "--keep-canonical", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["rows"] == 9 and summary["rows_skipped"] == {"empty question": 2}
    assert summary["rows_deduplicated"] == 7 and summary["duplicate_rows"] == 7 - summary["clusters"]
    slim_rows = list(csv.reader(io.StringIO(gzip.decompress(slim.read_bytes()).decode()), delimiter="\t"))[1:]
    canon = [row for row in read_csv(full.read_text())[1:] if row[5] == "1"]
    assert slim_rows == canon and len(canon) == summary["clusters"] == summary["rows_written"]


def test_cli_linkage_option(tmp_path, tiny_model):
    src = questions_file(tmp_path)
    for args, linkage in (([], "complete"), (["--linkage", "guard"], "guard"), (["--no-guard"], "single")):
        out = tmp_path / f"out-{linkage}.csv"
        r = run("dedup", src, "-o", out, "--model", tiny_model, "--json", *args)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["linkage"] == linkage
    r = run("dedup", src, "-o", tmp_path / "out.csv", "--model", tiny_model, "--linkage", "average")
    assert r.exit_code == 2 and "Invalid value for '--linkage'" in r.output
    assert "complete linkage, " in run("dedup", src, "-o", tmp_path / "o.csv", "--model", tiny_model).stderr


def test_cli_stdin_plain_text_to_stdout(tiny_model):
    r = run("dedup", "-", "-o", "-", "--model", tiny_model, "--threshold", "0.999", input="Why?\nwhy ?\nWhy?\n\nHow?\n")
    assert r.exit_code == 0, r.output
    rows = read_csv(r.stdout)
    assert rows[0] == ["question", "cluster_id", "canonical_id", "is_canonical", "score"]
    # no id column: ids are 1-based row numbers
    assert [row[1:4] for row in rows[1:]] == [["0", "1", "1"], ["0", "1", "0"], ["0", "1", "0"], ["", "", ""], ["1", "5", "1"]]


def test_cli_pairs_file_gives_its_unique_questions(tmp_path, tiny_model, pairs_file):
    out = tmp_path / "out.csv"
    r = run("dedup", pairs_file, "-o", out, "--model", tiny_model, "--json")
    assert r.exit_code == 0, r.output
    rows = read_csv(out.read_text())
    assert rows[0][:2] == ["id", "question"]
    qids = [row[0] for row in rows[1:]]
    assert len(qids) == len(set(qids)) == json.loads(r.stdout)["rows"]


def test_invalid_utf8_is_repaired_and_counted(tmp_path, tiny_model):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"id,question\n1,Caf\xe9 near me?\n2,Where is a caf\xc3\xa9?\n")
    out = tmp_path / "out.csv"
    r = run("dedup", path, "-o", out, "--model", tiny_model)
    assert r.exit_code == 0, r.output
    assert "1 invalid UTF-8 byte replaced" in r.stderr
    assert read_csv(out.read_text())[1][1] == "Caf\ufffd near me?"


@pytest.mark.parametrize(
    "name,content,args,message",
    [
        ("q.csv", b"id,body2\n1,x\n", [], "Error: no question column in {path}; columns are: id, body2. Use --text-column NAME"),
        ("q.csv", b"id,question\n1,x\n", ["--text-column", "title"], "Error: column 'title' not found; columns are: id, question. Use --text-column NAME"),
        ("q.csv", b"id,question\n1,x\n", ["--id-column", "key"], "Error: column 'key' not found; columns are: id, question. Use --id-column NAME"),
        ("q.csv", b"", [], "Error: {path} is empty"),
        ("q.txt", b"\n  \n", [], "Error: {path} is empty"),
        ("q.csv", b"id,question\n", [], "Error: {path} has a header but no rows"),
        # binary: refused as not UTF-8 text (or, read leniently, as having no question column)
        ("q.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", [], ("Error: {path} does not look like UTF-8 text", "Error: no question column in {path}")),
        ("q.xlsx", b"PK\x03\x04", [], "Error: unknown file type: {path}"),
        ("q.csv.gz", b"\x1f\x8bnot gzip", [], "Error: {path} is not a valid gzip file"),
        ("q.csv", b"question,score\nWhy?,3\n", [], "Error: the input already has column(s) score, which dedup adds"),
        ("missing.csv", None, [], "Error: file not found: {path}"),
        ("q.csv", b"id,question\n1,x\n", ["--model", "/nonexistent/model"], "Error: model directory not found: /nonexistent/model"),
    ],
)
def test_cli_bad_input(tmp_path, tiny_model, name, content, args, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out.csv"
    r = run("dedup", path, "-o", out, "--model", tiny_model, *args)
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    messages = message if isinstance(message, tuple) else (message,)
    assert len(lines) == 1 and lines[0].startswith(tuple(m.format(path=path) for m in messages)), r.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv")] == []


def test_cli_output_path_errors(tmp_path, tiny_model):
    src = questions_file(tmp_path)
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    r = run("dedup", src, "-o", out, "--model", tiny_model)
    assert r.exit_code == 1 and r.output.strip() == f"Error: output {out} already exists; use --force to overwrite it"
    assert out.read_text() == "precious\n"
    r = run("dedup", src, "-o", out, "--model", tiny_model, "--force")
    assert r.exit_code == 0 and out.read_text().startswith("id,question,extra,cluster_id")

    r = run("dedup", src, "-o", tmp_path / "nowhere" / "out.csv", "--model", tiny_model)
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: cannot write {tmp_path / 'nowhere' / 'out.csv'}: folder {tmp_path / 'nowhere'} does not exist"
    r = run("dedup", src, "-o", tmp_path, "--model", tiny_model)
    assert r.exit_code == 1 and r.output.strip() == f"Error: output {tmp_path} is a directory; give a file name"
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run("dedup", src, "-o", blocker / "out.csv", "--model", tiny_model)
    assert r.exit_code == 1 and r.output.startswith("Error: cannot write")
    r = run("dedup", src, "--model", tiny_model)
    assert r.exit_code == 2 and "Missing option '-o' / '--output'" in r.output


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_no_partial_file(tmp_path, error):
    out = tmp_path / "out.csv"
    out.write_text("previous\n")

    def rows():
        for i in range(10_000):
            if i == 5_000:
                raise error
            yield [str(i), "x" * 100]

    with pytest.raises(DupfinderError if isinstance(error, OSError) else KeyboardInterrupt) as e:
        write_table(str(out), ["id", "question"], rows())
    if isinstance(error, OSError):
        assert str(e.value) == f"cannot write {out}: No space left on device"
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_output_rows_label_canonicals_by_id_or_row_number():
    result = dedup(PlantedEncoder(), ["a", "b", "d"], np.ones(3, bool), DedupConfig(threshold=0.8))
    header, rows = output_rows(["question"], [["a"], ["b"], ["d"]], [None, "B7", None], result)
    assert list(rows) == [["a", "0", "1", "1", "1.0000"], ["b", "0", "1", "0", "0.9000"], ["d", "1", "3", "1", "1.0000"]]


def test_cli_against_index_marks_rows_already_indexed(tmp_path, tiny_model):
    indexed = tmp_path / "indexed.csv"
    indexed.write_text("id,question\nk1,How old are you?\nk2,What is the capital of France?\n,Why is the sky blue?\n")
    idx = tmp_path / "idx"
    r = run("index", indexed, "--index", idx, "--model", tiny_model)
    assert r.exit_code == 0, r.output
    out = tmp_path / "out.csv"
    r = run("dedup", questions_file(tmp_path), "-o", out, "--against", idx, "--threshold", "0.9999", "--json")
    assert r.exit_code == 0, r.output
    rows = read_csv(out.read_text())
    assert rows[0][-2:] == ["index_match_id", "index_match_score"]
    by_id = {row[0]: row for row in rows[1:]}
    assert by_id["q7"][-2:] == ["k1", "1.0000"] and by_id["q4"][-2:] == ["k1", "1.0000"]
    assert by_id["q2"][-2:] == ["k2", "1.0000"]
    assert by_id["q9"][-2:] == ["", ""] and by_id["q1"][-2:] == ["", ""]
    assert json.loads(r.stdout)["rows_matching_index"] == 3

    r = run("dedup", "-", "-o", out, "--force", "--against", idx, input="Why is the sky blue?\nHow?\n")
    assert r.exit_code == 0, r.output
    assert [row[-2] for row in read_csv(out.read_text())[1:]][0] != ""  # no user id: the index's own id
    assert "rows duplicate a question in" in r.stderr


def test_cli_against_errors(tmp_path, tiny_model):
    out = tmp_path / "out.csv"
    r = run("dedup", questions_file(tmp_path), "-o", out, "--against", tmp_path / "noindex")
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: no index at {tmp_path / 'noindex'}; build one with: dupfinder index FILE --index {tmp_path / 'noindex'}"
    src = tmp_path / "clash.csv"
    src.write_text("question,index_match_id\nWhy?,1\n")
    r = run("dedup", src, "-o", out, "--against", tmp_path / "noindex")
    assert r.exit_code == 1 and r.output.startswith("Error: the input already has column(s) index_match_id")
    assert not out.exists()
