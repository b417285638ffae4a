"""The interaction verifier: numpy inference equal to the training network, symmetric, blind to
nothing an unknown word says; its stack, band and threshold fitted and stored beside the head; the
cascade used by every command; a broken verifier reported in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from dupfinder.cli import cli
from dupfinder.engine import Engine, load_encoder
from dupfinder.model.files import load_numpy_weights
from dupfinder.train.verifier import VerifierConfig, choose_band, fit_fill, fit_stack, network, train_verifier
from dupfinder.model.fast import pad_ids
from dupfinder.verdict.verifier import Cascade, Verifier, token_ids, torch_arrays

torch = pytest.importorskip("torch")

PAIRS = [("How old are you?", "What is your age?"), ("How do I install Zorblax?", "How do I install Quibbit?"),
         ("Where are you from?", "Where are you going right now?"), ("?", "What is the best way to learn python quickly?"),
         ("", "cats cat cats")]


@pytest.fixture(scope="module")
def random_verifier(tiny_model):
    enc = load_encoder(tiny_model)
    embed = load_numpy_weights(enc.files)["embed.weight"].astype(np.float32)
    torch.manual_seed(0)
    net = network(embed, 64, 12, 0.0).eval()
    return net, Verifier(torch_arrays(net.state_dict()), embed, enc.vocab, enc.text_config, (0.2, 0.8), (1.0, 1.0, 0.0))


def test_numpy_inference_matches_the_training_network_and_is_symmetric(random_verifier):
    net, verifier = random_verifier
    a = [verifier.ids(x) for x, _ in PAIRS]
    b = [verifier.ids(y) for _, y in PAIRS]
    with torch.no_grad():
        want = net(torch.from_numpy(pad_ids(a)[0]), torch.from_numpy(pad_ids(b)[0])).numpy()
    got = verifier.logits(a, b, chunk=2)
    assert np.allclose(got, want, atol=1e-5)
    assert np.allclose(verifier.logits(b, a), got, atol=1e-5)


def test_tuned_word_offsets_run_in_numpy_as_in_training_and_survive_the_file(tiny_model, tmp_path):
    import io

    from dupfinder.verdict.verifier import load_verifier, verifier_bytes

    enc = load_encoder(tiny_model)
    embed = load_numpy_weights(enc.files)["embed.weight"].astype(np.float32)
    torch.manual_seed(1)
    net = network(embed, 64, 12, 0.0, tuned_words=40).eval()
    with torch.no_grad():
        net.delta.weight.normal_(0, 0.5)  # as if trained: the offsets must change the logits
    arrays = torch_arrays(net.state_dict())
    verifier = Verifier(arrays, embed, enc.vocab, enc.text_config, (0.2, 0.8), (1.0, 1.0, 0.0))
    frozen = Verifier({k: v for k, v in arrays.items() if k != "delta"}, embed, enc.vocab, enc.text_config, (0.2, 0.8), (1.0, 1.0, 0.0))
    a, b = [verifier.ids(x) for x, _ in PAIRS], [verifier.ids(y) for _, y in PAIRS]
    assert any(((x > 1) & (x < 40)).any() for x in a + b)  # some words are tuned
    with torch.no_grad():
        want = net(torch.from_numpy(pad_ids(a)[0]), torch.from_numpy(pad_ids(b)[0])).numpy()
    got = verifier.logits(a, b)
    assert np.allclose(got, want, atol=1e-5) and not np.allclose(frozen.logits(a, b), got, atol=1e-3)
    data = verifier_bytes(arrays)
    assert int(np.load(io.BytesIO(data))["format"]) == 2 and int(np.load(io.BytesIO(verifier_bytes(frozen.arrays)))["format"]) == 1
    (tmp_path / "verifier.npz").write_bytes(data)
    from dupfinder.model.files import sha256_hex

    record = {"file": "verifier.npz", "sha256": sha256_hex(data), "band": [0.2, 0.8], "stack": [1, 1, 0], "fill": [0, 1]}
    loaded = load_verifier(tmp_path, record, enc.vocab, enc.text_config, embed)
    assert np.allclose(loaded.logits(a, b), got, atol=2e-2)  # float16 weights in the file


def test_unknown_words_keep_their_identity(random_verifier):
    _, verifier = random_verifier
    zorblax, quibbit = verifier.ids("install Zorblax"), verifier.ids("install Quibbit")
    assert zorblax[-1] != quibbit[-1] and min(zorblax[-1], quibbit[-1]) >= len(verifier.vocab)
    assert (verifier.ids("install Zorblax") == zorblax).all()
    assert len(token_ids("", verifier.vocab, verifier.text_config, 64)) == 1  # an empty question still has a token


def test_a_search_reads_the_verifier_ids_from_the_tokens_the_head_read(verifier_model):
    cascade = Engine(load_encoder(verifier_model[0])).verdict.head
    texts = [x for pair in PAIRS for x in pair] + ["How do I install Zorblax 3.0 on my iPhone?"]
    for q in cascade.featurizer.questions(texts):
        assert (cascade._tokens(q) == cascade.verifier.ids(q.text)).all(), q.text


def test_the_stack_is_a_logistic_regression_of_both_logits():
    rng = np.random.default_rng(0)
    y = (rng.random(20000) < 0.5).astype(float)
    head_logit = 2 * (y - 0.5) + rng.normal(0, 1.5, len(y))
    verifier_logit = 1.5 * (y - 0.5) + rng.normal(0, 1.0, len(y))
    a, b, c = fit_stack(1 / (1 + np.exp(-head_logit)), verifier_logit, y)
    assert a == pytest.approx(2 / 1.5**2, abs=0.1) and b == pytest.approx(1.5, abs=0.1) and abs(c) < 0.1
    intercept, slope = fit_fill(1 / (1 + np.exp(-head_logit)), verifier_logit)
    assert slope > 0


def test_the_band_leaves_at_most_its_share_of_changed_verdicts():
    rng = np.random.default_rng(1)
    head_p = rng.random(10000)
    stacked = np.clip(head_p + rng.normal(0, 0.1, len(head_p)), 0, 1)
    lo, hi = choose_band(head_p, head_p, stacked, 0.5, 0.01)
    outside = (head_p < lo) | (head_p > hi)
    assert lo < 0.5 < hi and outside.any()
    assert ((head_p >= 0.5) != (stacked >= 0.5))[outside].sum() <= 0.01 * len(head_p)


def test_the_cascade_asks_the_verifier_inside_its_band_and_about_one_changed_word(random_verifier):
    from dupfinder.text import tokenize

    _, verifier = random_verifier

    class FixedHead:
        threshold, cosine_floor, featurizer = 0.5, 0.3, None

        def score(self, u, v, a, b):
            return np.array([0.05, 0.5, 0.95, 0.95])

    class Read:
        def __init__(self, text):
            self.text, self.tokens, self.text_tokens = text, None, tokenize(text)

    cascade = Cascade(FixedHead(), verifier, 0.5)
    a = [Read(t) for t in ("How old are you?", "What is your age?", "Where are you from?", "How do I reset my password?")]
    b = [Read(t) for t in ("Where are you from?", "How old are you?", "What is your age?", "How do I reset my router?")]
    p = cascade.score(None, None, a, b)
    assert cascade.calls == 2  # the band's pair, and password/router: one word apart, outside the band
    assert np.allclose(p[[0, 2]], verifier.combine(np.array([0.05, 0.95])))  # outside: the head's, on the stack's scale
    logit = verifier.logits([verifier.ids(a[3].text)], [verifier.ids(b[3].text)])
    assert np.allclose(p[3], verifier.combine(np.array([0.95]), logit))
    assert p[0] < p[2]


@pytest.fixture(scope="module")
def verifier_model(tiny_model, pairs_file, tmp_path_factory):
    from tests.test_verdict import add_random_head

    model = tmp_path_factory.mktemp("verifier") / "model"
    shutil.copytree(tiny_model, model)
    add_random_head(model)
    record = train_verifier(model, pairs_file, VerifierConfig(hidden=8, epochs=1, batch_size=8, unknown_pairs=10, threads=1),
                            log=lambda _: None)
    return model, record


def test_train_verifier_installs_a_cascade_every_command_uses(verifier_model, tiny_model):
    model, record = verifier_model
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["verdict"]["verifier"]["sha256"] == record["sha256"] and (model / "verifier.npz").exists()
    assert load_encoder(model).fingerprint == load_encoder(tiny_model).fingerprint
    lo, hi = record["band"]
    assert 0 <= lo <= hi <= 1 and record["calibration"]["pairs"] > 0
    engine = Engine(load_encoder(model))
    one = engine.similarity("How do I install Zorblax?", "How do I install Quibbit?")
    assert one["verdict"] == "head+verifier" and one["threshold"] == pytest.approx(manifest["verdict"]["threshold"])
    res = CliRunner().invoke(cli, ["similarity", "How old are you?", "What is your age?", "--model", str(model), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["verdict"] == "head+verifier"
    res = CliRunner().invoke(cli, ["similarity", "How old are you?", "What is your age?", "--model", str(model), "--json",
                                   "--verdict", "cosine"])
    assert res.exit_code == 0 and json.loads(res.output)["verdict"] == "cosine"


def test_a_broken_verifier_is_a_one_line_error_naming_the_file(verifier_model, tmp_path):
    model = tmp_path / "broken"
    shutil.copytree(verifier_model[0], model)
    (model / "verifier.npz").write_bytes(b"not a zip")
    res = CliRunner().invoke(cli, ["similarity", "How old are you?", "What is your age?", "--model", str(model)])
    assert res.exit_code == 1 and "verifier.npz" in res.output and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_a_verifier_of_two_networks_stacks_both_and_names_each_file(tiny_model, pairs_file, tmp_path):
    from tests.test_verdict import add_random_head

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    add_random_head(model)
    config = VerifierConfig(hidden=8, epochs=1, batch_size=8, unknown_pairs=10, threads=1, members=2, tuned_words=30)
    record = train_verifier(model, pairs_file, config, log=lambda _: None)
    assert [e["file"] for e in record["extra"]] == ["verifier-2.npz"] and (model / "verifier-2.npz").exists()
    assert len(record["stack"]) == 4 and len(record["fill"]) == 4 and record["extra"][0]["training"]["tuned_words"] == 30
    engine = Engine(load_encoder(model))
    verifier = engine.verdict.head.verifier
    a, b = [verifier.ids(x) for x, _ in PAIRS], [verifier.ids(y) for _, y in PAIRS]
    both = verifier.logits(a, b)
    assert both.shape == (len(PAIRS), 2) and "delta" in verifier.extra[0] and "delta" not in verifier.arrays
    assert np.allclose(both[:, 0], Verifier(verifier.arrays, verifier.embed, verifier.vocab, verifier.text_config, (0, 1), (1, 1, 0)).logits(a, b))
    p = np.full(len(PAIRS), 0.5)
    want = 1 / (1 + np.exp(-(record["stack"][1] * both[:, 0] + record["stack"][2] * both[:, 1] + record["stack"][3])))
    assert np.allclose(verifier.combine(p, both), want)  # the head's logit is 0 at p = 0.5
    lo, hi = record["extra"][0]["band"]
    given = record["extra"][0]["given"]
    assert len(given) == 3 and 0 <= lo <= hi <= 1
    p = np.linspace(0.05, 0.95, len(PAIRS))
    head_logit = np.log(p / (1 - p))
    filled = np.c_[both[:, 0], given[0] * head_logit + given[1] * both[:, 0] + given[2]]
    score = verifier.combine(p, filled)
    read = np.where(((score >= lo) & (score <= hi))[:, None], both, filled)  # network 2 only inside its step's band
    assert np.allclose(verifier.decide(p, a, b), verifier.combine(p, read))
    assert engine.similarity("How old are you?", "What is your age?")["verdict"] == "head+verifier"
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["verdict"]["verifier"]["extra"][0]["given"] = [1.0]  # a step's weights cut short
    (model / "manifest.json").write_text(json.dumps(manifest))
    res = CliRunner().invoke(cli, ["similarity", "How old are you?", "What is your age?", "--model", str(model)])
    assert res.exit_code == 1 and "verdict.verifier" in res.output and len(res.output.strip().splitlines()) == 1
    (model / "verifier-2.npz").write_bytes(b"not a zip")
    res = CliRunner().invoke(cli, ["similarity", "How old are you?", "What is your age?", "--model", str(model)])
    assert res.exit_code == 1 and "verifier-2.npz" in res.output and len(res.output.strip().splitlines()) == 1


def test_query_and_dedup_decide_with_the_cascade(verifier_model):
    from dupfinder.store.base import BruteForceStore, Question
    from tests.test_verdict import QUESTIONS

    model, _ = verifier_model
    encoder = load_encoder(model)
    store = BruteForceStore(encoder.dim)
    engine = Engine(encoder, store)
    engine.add([Question(str(i), q) for i, q in enumerate(QUESTIONS)])
    hits = engine.query(["How do I install Zorblax?"], k=3)[0]
    want = engine.verdict.scores(engine.encode(["How do I install Zorblax?"] * len(hits)), engine.encode([h.text for h in hits]),
                                 ["How do I install Zorblax?"] * len(hits), [h.text for h in hits])[0]
    assert np.allclose([h.verdict_score for h in hits], want)
    assert [h.duplicate for h in hits] == [s >= engine.threshold for s in want]
    texts = QUESTIONS + ["How do I install Zorblax?"]
    result, _ = engine.dedup(texts, np.ones(len(texts), bool))
    assert result.cluster[2] == result.cluster[len(QUESTIONS)] >= 0  # the same text is one cluster


def test_head_alone_and_calibrate_write_the_right_threshold(verifier_model, pairs_file, tmp_path):
    model = tmp_path / "calibrated"
    shutil.copytree(verifier_model[0], model)
    manifest = json.loads((model / "manifest.json").read_text())
    head_only = Engine(load_encoder(model), verdict="head")
    assert head_only.verdict.kind == "head"
    assert head_only.threshold == pytest.approx(manifest["verdict"]["verifier"]["head_threshold"])
    runner = CliRunner()
    res = runner.invoke(cli, ["calibrate", str(pairs_file), "--model", str(model), "--write", "accuracy", "--verdict", "head"])
    assert res.exit_code == 2 and "--verdict auto" in res.output
    res = runner.invoke(cli, ["calibrate", str(pairs_file), "--model", str(model), "--write", "accuracy", "--json"])
    assert res.exit_code == 0, res.output
    written = json.loads(res.output.splitlines()[-1])["written"]
    after = json.loads((model / "manifest.json").read_text())
    assert written["verdict"] == "head+verifier" and after["verdict"]["threshold"] == pytest.approx(written["threshold"])
    assert after["threshold"] == manifest["threshold"]  # the cosine tau is not touched


def test_threads_score_a_large_batch_as_one_thread_does(verifier_model):
    """Chunks on two threads at once (dedup --threads 2) give the very logits of one thread."""
    from dupfinder.verdict import verifier as verifier_module

    model, _ = verifier_model
    cascade = Engine(load_encoder(model)).verdict.head
    cascade = getattr(cascade, "stage", cascade)  # under the rewording rule where the model has one
    v = cascade.verifier
    texts = ["How do I learn python fast?", "What is the capital of France?", "How can I install Zorblax on linux?",
             "Why is the sky blue during the day?", "Where can I buy a cheap laptop?"] * 40
    a = [v.ids(t) for t in texts]
    b = [v.ids(t) for t in texts[1:] + texts[:1]]
    one = v.logits(a, b, chunk=8)
    try:
        verifier_module.set_threads(2)
        two = v.logits(a, b, chunk=8)
    finally:
        verifier_module.set_threads(1)
    assert np.array_equal(one, two)
