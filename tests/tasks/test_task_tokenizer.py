"""CharTokenizer: ids, round trips, the example layout, and its errors."""
import json

import pytest

from odelm.tasks import CharTokenizer, Example, Mano, TaskError


def test_ids_and_round_trip():
    tok = CharTokenizer("cabca")
    assert tok.chars == "abc" and tok.vocab_size == 7
    assert tok.encode("abc") == [4, 5, 6]
    assert tok.decode(tok.encode("cabbage"[:4])) == "cabb"
    assert tok.decode([tok.BOS, 4, tok.PAD, tok.SEP, 6, tok.EOS]) == "ac"
    assert (tok.PAD, tok.BOS, tok.SEP, tok.EOS) == (0, 1, 2, 3)


def test_iterable_of_strings():
    assert CharTokenizer(["ba", "c", "", "a"]) == CharTokenizer("abc")
    assert CharTokenizer(iter("xy")) == CharTokenizer("yx")


def test_encode_example_layout():
    tok = CharTokenizer(Mano().alphabet())
    ex = Example("+ 3 14", "17", 1)
    ids, start = tok.encode_example(ex)
    assert ids == [tok.BOS, *tok.encode(ex.prompt), tok.SEP, *tok.encode(ex.answer), tok.EOS]
    assert start == len(ex.prompt) + 2 and ids[start - 1] == tok.SEP
    # targets at positions start-1 .. len(ids)-2 are the answer then EOS
    assert ids[start:] == [*tok.encode("17"), tok.EOS]
    assert tok.decode(ids[start:]) == "17"


def test_unknown_character_named():
    tok = CharTokenizer("abc")
    assert tok.missing("abxzx\n") == "\nxz"
    with pytest.raises(TaskError, match=r"'\\n', 'x', 'z'"):
        tok.encode("abxzx\n")
    with pytest.raises(TaskError, match="'q'"):
        tok.encode_example(Example("ab", "q", 0))


@pytest.mark.parametrize("ids, match", [([4, 7], "id 7 at position 1"), ([-1], "id -1"), ([4, "a"], "position 1")])
def test_decode_errors(ids, match):
    with pytest.raises(TaskError, match=match):
        CharTokenizer("abc").decode(ids)


def test_dict_round_trip():
    tok = CharTokenizer("z a\n9")
    again = CharTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again == tok and hash(again) == hash(tok) and again.to_dict() == tok.to_dict()
    assert again != CharTokenizer("za9")


@pytest.mark.parametrize("d", [{}, {"chars": "ab", "x": 1}, {"chars": 5}, ["ab"], {"chars": ""}])
def test_from_dict_errors(d):
    with pytest.raises(TaskError, match="CharTokenizer"):
        CharTokenizer.from_dict(d)


@pytest.mark.parametrize("chars", ["", [], [""], ["a", 1], 5])
def test_constructor_errors(chars):
    with pytest.raises(TaskError, match="CharTokenizer"):
        CharTokenizer(chars)
