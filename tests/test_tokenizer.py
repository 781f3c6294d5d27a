import random

import numpy as np
import pytest

from tinylm.data.saved import load_tokenizer, tokenizer_from_dict
from tinylm.data.tokenizer import ByteTokenizer, CharTokenizer, UnknownCharactersError
from tinylm.errors import DataError


def test_vocabulary_is_sorted_unique_characters():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.vocab_size == 8


def test_encode_decode_round_trip_on_any_text():
    text = "To be, or not to be: that is the question. Ünïcødé ✓"
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_unseen_characters_are_a_clear_error_listing_them():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UnknownCharactersError, match=r"'x' 'z'"):
        tok.encode("abxcz")


def test_save_and_load_give_the_same_tokenizer(tmp_path):
    tok = CharTokenizer.from_text("Hé\nllo")
    tok.save(tmp_path / "tok.json")
    again = CharTokenizer.load(tmp_path / "tok.json")
    assert again.chars == tok.chars and again.encode("Hé\nllo") == tok.encode("Hé\nllo")


def test_shakespeare_has_65_characters(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    assert len(shakespeare) == 1_115_394
    assert tok.vocab_size == 65
    assert tok.decode(tok.encode(shakespeare[:1000])) == shakespeare[:1000]


def random_unicode(rng, n: int) -> str:
    """Any code point but the surrogates (which UTF-8 cannot hold), weighted toward ASCII and Latin."""
    ranges = [(0, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    out = []
    for _ in range(n):
        lo, hi = ranges[min(int(rng.expovariate(1.0)), len(ranges) - 1)]
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


@pytest.fixture(scope="module")
def bpe():
    from tinylm.data.bpe import BPETokenizer

    rng = random.Random(0)
    return BPETokenizer.train([random_unicode(rng, 3000), "the cat sat on the mat " * 50], vocab_size=300)


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_every_tokenizer_round_trips_random_unicode_and_reloads(kind, bpe, tmp_path):
    rng = random.Random(kind)
    for _ in range(20):
        text = random_unicode(rng, rng.randint(0, 300)) + "\r\n<|endoftext|>\x00"
        tok = {"char": CharTokenizer.from_text(text), "byte": ByteTokenizer(), "bpe": bpe}[kind]
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
        assert tok.decode_bytes(ids) == text.encode("utf-8")
        assert int(tok.token_bytes()[ids].sum()) == len(text.encode("utf-8"))
    tok.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert type(again) is type(tok) and again.encode(text) == ids


def test_char_encoding_is_vectorised_and_matches_the_notebooks_loop(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    ids = tok.encode_array(shakespeare)
    assert ids.dtype == np.int64 and ids.tolist() == [tok.stoi[ch] for ch in shakespeare]


def test_a_checkpoints_old_char_tokenizer_dict_still_loads():
    tok = tokenizer_from_dict({"type": "char", "chars": ["\n", "a", "é"]})
    assert isinstance(tok, CharTokenizer) and tok.encode("aé\n") == [1, 2, 0]


def test_byte_tokenizer_has_256_bytes_and_an_end_of_text():
    tok = ByteTokenizer()
    assert tok.vocab_size == 257 and tok.eot_id == 256 and tok.encode("é") == [195, 169]
    assert tok.decode([104, 256, 105]) == "hi"


def test_bpe_saves_a_standard_tokenizer_json_that_transformers_loads(bpe, tmp_path):
    from transformers import PreTrainedTokenizerFast

    bpe.save(tmp_path / "tokenizer.json")
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    text = "the cat sat on the mat ✓ ü"
    assert fast.decode(bpe.encode(text)) == text


def test_bpe_refuses_a_vocabulary_below_257():
    from tinylm.data.bpe import BPETokenizer

    with pytest.raises(DataError, match="at least 257"):
        BPETokenizer.train(["abc"], vocab_size=256)


def test_an_unknown_tokenizer_description_is_a_clear_error():
    with pytest.raises(DataError, match="unknown tokenizer"):
        tokenizer_from_dict({"type": "wordpiece"})


def test_tokens_show_as_text_for_charts():
    tok = ByteTokenizer()
    assert tok.token_text(104) == "h" and tok.token_text(0xC3) == "<0xC3>" and tok.token_text(256) == "<|endoftext|>"
    assert len(tok.chars) == 257 and CharTokenizer.from_text("ab").chars == ["a", "b"]


def _renumber_last(model):
    last = max(model["vocab"], key=model["vocab"].get)
    model["vocab"][last] += 5


def _foreign_token(model):
    """The last token (and the merge that made it) swapped for a character no byte stands for."""
    last = max(model["vocab"], key=model["vocab"].get)
    model["vocab"]["日"] = model["vocab"].pop(last)
    model["merges"] = [m for m in model["merges"] if "".join(m.split(" ") if isinstance(m, str) else m) != last]


@pytest.mark.parametrize("edit, message", [(_renumber_last, "ids are not 0..299 without gaps"),
                                           (_foreign_token, "token '日' is not GPT-2 byte-level")])
def test_a_bpe_file_that_is_not_gpt2_byte_level_is_refused_when_loaded(bpe, edit, message):
    """Hugging Face loads these; token_bytes_table would raise TypeError/KeyError later, so loading says why."""
    data = bpe.to_dict()
    edit(data["model"])
    with pytest.raises(DataError, match=message):
        tokenizer_from_dict(data)
