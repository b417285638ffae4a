"""The rewording rule: two questions that differ only in auxiliaries, second-person forms,
articles, inflections or "how ADJ" / "what NOUN" are duplicates with at least their class's
duplicate rate measured on training pairs; the rule raises scores, never lowers them, and a model
without its record keeps its stage as it was."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dupfinder.engine import Engine, load_encoder
from dupfinder.text import tokenize
from dupfinder.verdict.rewording import (Rewordings, add_rewording, attributes, canonical, class_rates,
                                         load_encoder_rewordings, reworded, reworded_questions, text_words)

from test_verdict import add_random_head


@pytest.mark.parametrize("a,b,kind", [
    ("Could u help me?", "Can you help me?", "same"),  # auxiliary and an informal "you"
    ("Is the train late?", "Is train late?", "same"),  # an article
    ("Who is swimming?", "Who swims?", None),  # "is" is an auxiliary, but "swimming" / "swims" keep different stems
    ("How tall are you?", "What is your height?", "reorder"),  # WordNet: tall measures height
    ("How tall are you?", "What is your weight?", None),
    ("Where do you live?", "Where did you live?", None),  # tense is not an auxiliary swap
    ("Why don't I sleep?", "Why do I sleep?", None),  # a negation never drops out
    ("Why don't I sleep?", "Why do I not sleep?", "reorder"),
    ("Is Paris bigger than Rome?", "Is Rome bigger than Paris?", "reorder"),
    ("", "Can you help me?", None),
])
def test_rewording_classes(a, b, kind):
    assert reworded(text_words(a), text_words(b)) == kind
    assert reworded(text_words(b), text_words(a)) == kind  # symmetric
    qa, qb = _Q(a), _Q(b)
    assert reworded_questions(qa, qb) == kind and reworded_questions(qb, qa) == kind  # the stage's fast path


def test_attributes_come_from_wordnet_and_apply_only_with_the_noun_on_the_other_side():
    table = attributes()
    assert "age" in table["old"] and "height" in table["tall"] and len(table) > 500
    assert canonical(["how", "old", "is", "it"], ["what", "age"]) == ["what", "age", "<aux>", "it"]
    assert canonical(["how", "old", "is", "it"], ["when"]) == ["how", "old", "<aux>", "it"]


def test_class_rates_count_labels_per_class():
    record = class_rates([("Can you help me?", "Could you help me?", 1), ("Can u help me?", "Can you help me?", 0),
                          ("Is A bigger than B?", "Is B bigger than A?", 1), ("Where is it?", "When is it?", 0)], min_pairs=1)
    assert record["pairs"] == {"same": 2, "reorder": 1} and record["rates"] == {"same": 0.5, "reorder": 1.0}
    assert record["of_pairs"] == 4
    few = class_rates([("Can you help me?", "Could you help me?", 1)])  # one pair says nothing about a class
    assert few["pairs"]["same"] == 1 and few["rates"] == {}


class _Q:
    """A question as the verdict stage reads it, as far as the rule looks (its text_tokens)."""

    def __init__(self, text):
        self.text_tokens = tuple(tokenize(text))


class _Flat:
    """A stand-in stage scoring every pair 0.1 (the rule's effect is then plain to see)."""

    kind, threshold, cosine_floor = "head", 0.5, 0.0

    class featurizer:  # noqa: N801
        @staticmethod
        def questions(texts):
            return [_Q(t) for t in texts]

    def score(self, u, v, a, b):
        return np.full(len(a), 0.1)


def test_the_rule_raises_rewordings_to_their_rate_and_leaves_other_pairs():
    rule = Rewordings(_Flat(), {"same": 0.9, "reorder": 0.7})
    qs = rule.featurizer.questions(["Can u help me?", "Could you help me?", "Is A bigger than B?", "Is B bigger than A?", "Where is it?"])
    p = rule.score(None, None, [qs[0], qs[2], qs[4]], [qs[1], qs[3], qs[1]])
    assert p.tolist() == [0.9, 0.7, 0.1] and rule.raised == 2
    assert rule.kind == "head" and rule.threshold == 0.5
    rule.threshold = 0.6
    assert rule.stage.threshold == 0.6


def test_add_rewording_stores_the_rates_and_every_command_uses_them(tiny_model, pairs_file, tmp_path):
    model = tmp_path / "with_head"
    shutil.copytree(tiny_model, model)
    add_random_head(model)
    plain = Engine(load_encoder(model))
    assert load_encoder_rewordings(load_encoder(model), "stage") == "stage"  # no record: the stage as it was
    record = add_rewording(model, pairs_file, log=lambda _: None)
    assert json.loads((model / "manifest.json").read_text())["verdict"]["rewording"] == record
    assert load_encoder(model).fingerprint == load_encoder(tiny_model).fingerprint
    engine = Engine(load_encoder(model))
    rates = {"same": 0.97, "reorder": 0.96}
    engine.verdict.head.rates.update(rates)
    pair = ("Can u help me with python?", "Could you help me with python?")
    assert plain.similarity(*pair)["score"] < 0.97
    assert engine.similarity(*pair)["score"] == pytest.approx(0.97) and engine.similarity(*pair)["duplicate"]
    other = ("How do I learn python?", "Where can I buy a cheap laptop?")
    assert engine.similarity(*other)["score"] == pytest.approx(plain.similarity(*other)["score"])
    assert Engine(load_encoder(model), verdict="head").verdict.head.__class__.__name__ != "Rewordings"


def test_train_rewording_command_adds_the_record_and_reports_bad_input(tiny_model, pairs_file, tmp_path):
    from click.testing import CliRunner

    from dupfinder.cli import cli

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    result = CliRunner().invoke(cli, ["train-rewording", str(model), str(pairs_file)])
    assert result.exit_code == 1 and "no verdict stage" in result.output  # no head yet
    add_random_head(model)
    result = CliRunner().invoke(cli, ["train-rewording", str(model), str(pairs_file)])
    assert result.exit_code == 0, result.output
    assert "rewording" in json.loads((model / "manifest.json").read_text())["verdict"]
    result = CliRunner().invoke(cli, ["train-rewording", str(model), str(tmp_path / "missing.csv")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "Error" in result.output


@pytest.mark.parametrize("damage", [{"rates": {"same": "high"}}, {"rates": {"same": 1.5}}, {"rates": None}, ["same"]])
def test_a_damaged_rewording_entry_is_a_one_line_error(tiny_model, tmp_path, damage):
    from click.testing import CliRunner

    from dupfinder.cli import cli

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    add_random_head(model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["verdict"]["rewording"] = damage
    (model / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["similarity", "Can you help?", "Could you help?", "--model", str(model)])
    assert result.exit_code == 1 and result.output.startswith("Error:") and "rewording" in result.output
    assert result.output.count("\n") == 1
    ok = CliRunner().invoke(cli, ["similarity", "Can you help?", "Could you help?", "--model", str(model), "--verdict", "cosine"])
    assert ok.exit_code == 0  # the cosine rule does not read the verdict stage
