import gzip

import numpy as np
import pytest

from dupfinder.io import Pairs, ReadReport, duplicate_clusters, load_pairs, load_questions
from dupfinder.train.batches import HardNegatives, OverlapBias, PairBatcher, cluster_positives, split_by_cluster
from dupfinder.errors import InputError

HEADER = b"id,qid1,qid2,question1,question2,is_duplicate\n"


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_messy_rows_are_repaired_or_skipped_and_counted(tmp_path):
    body = (
        b'1,1,2,"How old are you?","What is your age?",1\n'
        b'2,3,4,"Caf\xe9 near me?","Where is a caf\xc3\xa9?",0\n'  # invalid UTF-8 byte, then valid
        b'3,5,6,"","Empty first?",0\n'  # empty question
        b'4,7,8,"He said ""hi"", then\nleft?","Multi-line, quoted?",1\n'  # doubled quotes, newline
        b'5,9,10,too,many,fields,here,1\n'
        b'6,11,12,"Fine?","Also fine?",maybe\n'  # unreadable label
    )
    pairs = load_pairs(write(tmp_path, "messy.csv", HEADER + body))
    assert len(pairs) == 3
    assert pairs.questions[7] == 'He said "hi", then\nleft?'
    assert "\ufffd" in pairs.questions[3]
    r = pairs.report
    assert r.rows == 6 and r.kept == 3
    assert r.skipped == {"empty question": 1, "wrong number of fields": 1, "unreadable label": 1}
    assert r.bytes_fixed["invalid UTF-8"] == 1


def test_read_report_counts_fixed_bytes_as_bytes_not_rows(tmp_path):
    body = b'1,1,2,"Bad \xff\xfe here?","Nul\x00 here?",0\n2,3,4,"Fine?","Also fine?",1\n'
    r = load_pairs(write(tmp_path, "bytes.csv", HEADER + body)).report
    assert r.bytes_fixed == {"invalid UTF-8": 2, "NUL": 1} and not r.repaired
    assert r.summary().endswith("2 rows, 2 kept, 2 invalid UTF-8 bytes replaced, 1 NUL byte removed")


def test_gzip_tsv_and_bom(tmp_path):
    tsv = "\ufeffid\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tA?\tB?\t1\n".encode()
    pairs = load_pairs(write(tmp_path, "p.tsv.gz", gzip.compress(tsv)))
    assert pairs.texts(1) == ["A?"] and pairs.label.tolist() == [1]


def test_without_qid_columns_ids_come_from_normalized_text(tmp_path):
    data = b"question1,question2,is_duplicate\nHow old are you?,What is your age?,1\nhow  OLD are you?,Who are you?,0\n"
    pairs = load_pairs(write(tmp_path, "noqid.csv", data))
    assert pairs.qid1[0] == pairs.qid1[1]  # same question after normalization
    assert len(pairs.questions) == 3


def test_missing_column_names_the_columns_found(tmp_path):
    with pytest.raises(InputError, match=r"column 'question1' not found; columns are: id, q, is_duplicate. Use --q1-column"):
        load_pairs(write(tmp_path, "bad.csv", b"id,q,is_duplicate\n1,x,1\n"))


@pytest.mark.parametrize("content,message", [(b"", "is empty"), (b"\n\n  \n", "is empty"), (HEADER, "no usable question pairs")])
def test_empty_files(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        load_pairs(write(tmp_path, "empty.csv", content))


def test_missing_file_and_bad_gzip(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_pairs(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="not a valid gzip"):
        load_pairs(write(tmp_path, "bad.csv.gz", b"\x1f\x8b" + b"garbage"))


def test_duplicate_clusters_are_connected_components(pairs_file):
    pairs = load_pairs(pairs_file)
    c = duplicate_clusters(pairs)
    assert c[1] == c[2] == c[30]  # 1-2 and 2-30 are duplicates
    assert c[5] == c[6] == c[31]
    assert c[3] != c[4]  # labeled non-duplicate
    assert c[1] != c[21]


def test_split_by_cluster_never_shares_a_question_or_cluster():
    rng = np.random.default_rng(0)
    # a synthetic pairs set: 300 clusters of 1-4 questions, duplicates within, non-duplicates across
    from dupfinder.io import Pairs, ReadReport

    cluster_sizes = rng.integers(1, 5, size=300)
    qids, cl = [], []
    for c, n in enumerate(cluster_sizes):
        for _ in range(n):
            qids.append(len(qids))
            cl.append(c)
    cl = np.array(cl)
    q1, q2, lab = [], [], []
    for c in range(300):
        members = np.flatnonzero(cl == c)
        for a, b in zip(members[:-1], members[1:]):
            q1.append(a); q2.append(b); lab.append(1)
    for _ in range(500):
        a, b = rng.integers(0, len(qids), 2)
        if cl[a] != cl[b]:
            q1.append(a); q2.append(b); lab.append(0)
    pairs = Pairs(np.array(q1), np.array(q2), np.array(lab, dtype=np.int8), {q: f"q{q}" for q in qids}, ReadReport("x"))
    clusters = duplicate_clusters(pairs)
    train_idx, val_idx = split_by_cluster(pairs, clusters, 0.1, seed=0)
    assert len(val_idx) > 0 and (pairs.label[val_idx] == 0).any() and (pairs.label[val_idx] == 1).any()
    train_q = set(pairs.qid1[train_idx]) | set(pairs.qid2[train_idx])
    val_q = set(pairs.qid1[val_idx]) | set(pairs.qid2[val_idx])
    assert not train_q & val_q
    assert not {clusters[q] for q in train_q} & {clusters[q] for q in val_q}
    assert not set(train_idx) & set(val_idx)
    # deterministic for a seed
    again = split_by_cluster(pairs, clusters, 0.1, seed=0)
    assert np.array_equal(again[1], val_idx)


@pytest.mark.parametrize("batch_size", [2, 7, 32])
def test_batcher_never_puts_one_cluster_twice_in_a_batch(batch_size):
    rng = np.random.default_rng(1)
    # skewed cluster sizes: one huge cluster, a few mid, many singletons
    cluster = np.r_[np.zeros(60, int), np.repeat(np.arange(1, 11), 8), np.arange(11, 400)]
    rng.shuffle(cluster)
    b = PairBatcher(cluster, batch_size, seed=3)
    batches = b.epoch(0)
    assert batches and all(len(x) == batch_size for x in batches)
    for x in batches:
        assert len(set(cluster[x].tolist())) == batch_size
    used = np.concatenate(batches)
    assert len(set(used.tolist())) == len(used)  # no pair twice in an epoch
    # a cluster gives at most one pair per batch; beyond that only the last, incomplete batch is lost
    sizes = np.bincount(cluster)
    unavoidable = np.maximum(sizes - len(batches), 0).sum()
    assert len(cluster) - len(used) <= unavoidable + batch_size - 1
    # deterministic per (seed, epoch), reshuffled across epochs
    assert all(np.array_equal(p, q) for p, q in zip(b.epoch(0), PairBatcher(cluster, batch_size, seed=3).epoch(0)))
    assert not all(np.array_equal(p, q) for p, q in zip(b.epoch(0), b.epoch(1)))


def test_cluster_positives_are_implied_unlabeled_duplicates_capped_per_cluster():
    # cluster A: a chain 1-2-3-4 (3 labeled, 3 implied); cluster B: 10-11 only (nothing implied);
    # cluster C: a triangle 20-21-22, all labeled (nothing implied); 1-10 is a labeled non-duplicate
    q1 = np.array([1, 2, 3, 10, 20, 21, 20, 1])
    q2 = np.array([2, 3, 4, 11, 21, 22, 22, 10])
    label = np.array([1, 1, 1, 1, 1, 1, 1, 0], dtype=np.int8)
    questions = {q: f"question {q}" for q in np.r_[q1, q2].tolist()}
    pairs = Pairs(q1, q2, label, questions, ReadReport("test"))
    clusters = duplicate_clusters(pairs)
    a, b = cluster_positives(pairs, clusters, seed=0, per_labeled=1.0)
    got = {tuple(sorted(p)) for p in zip(a.tolist(), b.tolist())}
    assert got == {(1, 3), (1, 4), (2, 4)}  # every implied pair of A, fewer than its 3 labeled
    a, b = cluster_positives(pairs, clusters, seed=0, per_labeled=0.5)
    assert len(a) == 2 and {tuple(sorted(p)) for p in zip(a.tolist(), b.tolist())} <= got  # round(0.5 x 3)
    again = cluster_positives(pairs, clusters, seed=0, per_labeled=0.5)
    assert np.array_equal(again[0], a) and np.array_equal(again[1], b)


def test_hard_negatives_are_pooled_per_cluster():
    # cluster A = {1, 2, 3}, cluster B = {10, 11}; labeled non-duplicates 1-10 and 3-30, and 2-3,
    # which contradicts cluster A and is left out
    q1 = np.array([1, 2, 10, 1, 3, 2])
    q2 = np.array([2, 3, 11, 10, 30, 3])
    label = np.array([1, 1, 1, 0, 0, 0], dtype=np.int8)
    questions = {q: f"question {q}" for q in np.r_[q1, q2].tolist()}
    pairs = Pairs(q1, q2, label, questions, ReadReport("test"))
    clusters = duplicate_clusters(pairs)
    hard = HardNegatives(pairs, clusters)
    a, b, lone = clusters[1], clusters[10], clusters[30]
    assert hard.of_cluster[a].tolist() == [10, 30]  # 1 != 10 and 3 != 30 hold for all of A
    assert hard.of_cluster[b].tolist() == [1]
    assert hard.of_cluster[lone].tolist() == [3]
    rng = np.random.default_rng(0)
    got = hard.sample([a, b, clusters[11], 999], rng)  # 999 has none: no entry for it
    assert len(got) == 3 and got[0] in (10, 30) and got[1] == 1 and got[2] == 1


def test_batcher_refuses_batch_of_one():
    with pytest.raises(ValueError):
        PairBatcher(np.arange(5), 1, seed=0)


def test_load_questions_from_pairs_table_and_lines(tmp_path, pairs_file):
    q = load_questions(pairs_file)
    assert q.kind == "pairs" and len(q) == len(set(q.ids)) == 47
    t = load_questions(write(tmp_path, "q.csv", b"qid,text\n7,How?\n8,\n"))
    assert t.kind == "table" and t.ids == ["7", "8"] and t.ok.tolist() == [True, False]
    lines = load_questions(write(tmp_path, "q.txt", b"One?\n\nTwo?\n"))
    assert lines.kind == "lines" and lines.texts == ["One?", "", "Two?"] and lines.ids == [None] * 3
    with pytest.raises(InputError, match="unknown file type"):
        load_questions(write(tmp_path, "q.json", b"{}"))
    with pytest.raises(InputError, match="column 'body' not found; columns are: qid, text. Use --text-column"):
        load_questions(tmp_path / "q.csv", text_column="body")


def overlap_pairs():
    """Eight pairs over word ids 2-9 (id 1 = <unk>, id 10 = "?"), labeled so that overlap predicts the label."""
    t = {i: np.array(w, dtype=np.int64) for i, w in enumerate([
        [2, 3, 10], [4, 5, 10],            # 0-1: no shared word
        [2, 3, 4, 10], [2, 3, 5, 10],      # 2-3: overlap 2 / 4
        [6, 7, 10], [6, 7, 10],            # 4-5: the same words
        [8, 1, 10], [9, 1, 10],            # 6-7: only <unk> and "?" shared, which do not count
    ])}
    q1 = np.array([0, 0, 0, 6, 2, 2, 4, 4])
    q2 = np.array([1, 1, 1, 7, 3, 3, 5, 5])
    label = np.array([1, 0, 0, 0, 1, 0, 1, 1], dtype=np.int8)
    is_word = np.r_[False, False, np.ones(8, bool), False]  # pad, unk, words 2-9, "?"
    return Pairs(q1, q2, label, {}, ReadReport("pairs.csv")), t, is_word


def test_overlap_bias_weighs_each_label_by_how_much_overlap_gets_it_wrong():
    pairs, tokens, is_word = overlap_pairs()
    bias = OverlapBias(pairs, tokens, is_word, bins=2)
    np.testing.assert_allclose(bias.overlap(pairs.qid1, pairs.qid2), [0, 0, 0, 0, 0.5, 0.5, 1, 1])
    # bin 0 (overlap < 0.5): 1 duplicate of 4; bin 1: 3 of 4; add-one smoothed
    np.testing.assert_allclose(bias.p_duplicate, [2 / 6, 4 / 6])
    dup, neg = pairs.label == 1, pairs.label == 0
    w_dup = bias.weights(pairs.qid1[dup], pairs.qid2[dup], duplicate=True)
    w_neg = bias.weights(pairs.qid1[neg], pairs.qid2[neg], duplicate=False)
    assert w_dup.mean() == pytest.approx(1) and w_neg.mean() == pytest.approx(1)
    # the duplicate in other words outweighs those in the same words, 2/3 against 1/3
    assert w_dup[0] == pytest.approx(2 * w_dup[1]) and w_dup[1] == pytest.approx(w_dup[2])
    # the non-duplicate in the same words outweighs those in other words
    assert w_neg[3] == pytest.approx(2 * w_neg[0])
    off = bias.weights(pairs.qid1, pairs.qid2, duplicate=True, strength=0.0)
    np.testing.assert_array_equal(off, np.ones(8, np.float32))
    half = bias.weights(pairs.qid1[dup], pairs.qid2[dup], duplicate=True, strength=0.5)
    np.testing.assert_allclose(half, (1 + w_dup) / 2, rtol=1e-6)
