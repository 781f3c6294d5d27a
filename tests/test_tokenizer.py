import pytest

from tinylm.data.tokenizer import CharTokenizer, UnknownCharactersError


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
