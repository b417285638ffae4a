import json

import pytest

from dupfinder.text import PAD_ID, UNK_ID, TextConfig, Vocab, normalize, tokenize


def test_normalize_unicode_quotes_spaces_case():
    assert normalize("  What\u2019s   UP\u00a0now? ") == "what's up now?"
    assert normalize("Ｆｕｌｌｗｉｄｔｈ") == "fullwidth"  # NFKC


@pytest.mark.parametrize("text", ["a\u00a0b", "x\u2003y\u3000z", "tab\tnew\nline\r\x0b\x0c end", "\x1c\x1d\x1e\x1f sep",
                                  "\u2028ls\u2029ps\x85nel", "  lead  and trail  ", "", "   ", "zero\u200bwidth"])
def test_normalize_collapses_every_whitespace_a_regex_would(text):
    import re
    import unicodedata

    expected = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()
    assert normalize(text) == expected


def test_tokenize_clitics_and_punctuation():
    assert tokenize("Why don't cats like C++?") == ["why", "do", "n't", "cats", "like", "c", "+", "+", "?"]
    assert tokenize("What's 2+2?") == ["what", "'s", "2", "+", "2", "?"]
    assert tokenize("") == []


def test_tokenize_truncates_to_max_len():
    assert len(tokenize("word " * 100, TextConfig(max_len=7))) == 7


def test_vocab_build_is_deterministic_and_round_trips():
    lists = [["b", "a", "a"], ["c", "b", "a"], ["rare"]]
    v = Vocab.build(lists, min_freq=2)
    assert v.itos == ["<pad>", "<unk>", "a", "b"]
    assert v.encode(["a", "zzz", "b"]).tolist() == [2, UNK_ID, 3]
    assert Vocab.from_json(v.to_json()).itos == v.itos
    assert json.loads(v.to_json())[PAD_ID] == "<pad>"
    assert len(Vocab.build(lists, min_freq=1, max_size=4)) == 4


def test_vocab_must_start_with_specials():
    with pytest.raises(ValueError):
        Vocab(["a", "b"])


def test_drop_end_punct_drops_only_the_marks_that_end_a_question():
    drop = TextConfig(drop_end_punct=True)
    assert tokenize("Where are you from?", drop) == ["where", "are", "you", "from"]
    assert tokenize("What is X? Why?!", drop) == ["what", "is", "x", "?", "why"]  # inner marks stay
    assert tokenize("Is C++ hard.", drop) == ["is", "c", "+", "+", "hard"]
    assert tokenize("???", drop) == ["?"]  # never empty
    assert tokenize("Where are you from?") == ["where", "are", "you", "from", "?"]  # off by default: older models
