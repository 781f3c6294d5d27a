"""Tokenizers: characters (the notebook's), bytes, and byte-level BPE (``tinylm.data.bpe``).

    tok = CharTokenizer.from_text("hello")   # vocabulary: sorted unique chars "ehlo"
    tok.encode("hell") -> [1, 0, 2, 2];  tok.decode([1, 0, 2, 2]) -> "hell"
    ByteTokenizer().encode("é") -> [195, 169]    # 256 byte values + one end-of-text token (256)

Every tokenizer has ``encode`` (list of ids), ``encode_array`` (numpy ids, fast), ``decode``,
``decode_bytes`` (the UTF-8 bytes of some ids, for streaming without splitting a character),
``token_bytes`` (UTF-8 bytes per token id: what bits per byte divides by), ``eot_id`` (the
document separator, or None) and ``to_dict``; it is saved with every run (``tokenizer.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinylm.atomic import atomic_write_text
from tinylm.errors import TinyLMError


def code_points(text: str) -> np.ndarray:
    """(N,) uint32 code points of ``text``, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class UnknownCharactersError(TinyLMError):
    """Text contains characters that are not in the vocabulary; ``unknown`` lists them."""

    def __init__(self, message: str, unknown: list[str] | None = None):
        super().__init__(message)
        self.unknown = unknown or []


class Tokenizer:
    """What the tokenizers share: text and bytes decoding, saving."""

    kind = ""
    eot_id: int | None = None

    def encode_array(self, text: str, dtype=np.int64) -> np.ndarray:
        """(N,) token ids of ``text`` as a numpy array of ``dtype``."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def unknown_characters(self, text: str) -> list[str]:
        return []  # byte and BPE tokenizers encode any text

    @property
    def chars(self) -> list[str]:
        """Each token as text: labels for charts and the playground."""
        return [self.token_text(i) for i in range(self.vocab_size)]

    def token_text(self, token: int) -> str:
        """One token as text; a piece of a character as its bytes (``<0xC3>``), end-of-text by name."""
        if token == self.eot_id:
            return "<|endoftext|>"
        blob = self.token_bytes_table()[int(token)]
        try:
            return blob.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(f"<0x{b:02X}>" for b in blob)

    def token_bytes(self) -> np.ndarray:
        """(V,) int64: how many UTF-8 bytes each token stands for (0 for end-of-text)."""
        return np.array([len(b) for b in self.token_bytes_table()], dtype=np.int64)

    def decode_bytes(self, ids) -> bytes:
        table = self.token_bytes_table()
        return b"".join(table[int(i)] for i in ids)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: list[str]):
        self._chars = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(self._chars)}  # string -> integer
        self.itos = dict(enumerate(self._chars))  # integer -> string
        points = np.array([ord(ch) for ch in self._chars], dtype=np.int64)
        # code point -> id, -1 for characters outside the vocabulary: encoding is one numpy gather
        self._lookup = np.full(int(points.max()) + 2 if len(points) else 1, -1, dtype=np.int32)
        self._lookup[points] = np.arange(len(points))

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def chars(self) -> list[str]:
        return self._chars

    @property
    def vocab_size(self) -> int:
        return len(self._chars)

    def unknown_characters(self, text: str) -> list[str]:
        return sorted(set(text) - self.stoi.keys())

    def encode_array(self, text: str, dtype=np.int64) -> np.ndarray:
        points = code_points(text)  # (N,) uint32
        ids = np.take(self._lookup, points, mode="clip")  # (N,) int32; past the table: the last slot, always -1
        if len(ids) and ids.min() < 0:
            unknown = self.unknown_characters(text)
            shown = " ".join(repr(ch) for ch in unknown)
            raise UnknownCharactersError(
                f"the text contains characters this model never saw: {shown}; remove them from the prompt", unknown)
        return ids.astype(dtype, copy=False)

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def token_text(self, token: int) -> str:
        return self.itos[int(token)]

    def token_bytes_table(self) -> list[bytes]:
        return [ch.encode("utf-8") for ch in self._chars]

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self._chars}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        return cls(data["chars"])

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class ByteTokenizer(Tokenizer):
    """The 256 byte values of UTF-8 text, plus end-of-text (id 256) between documents."""

    kind = "byte"
    eot_id = 256
    vocab_size = 257

    def encode_array(self, text: str, dtype=np.int64) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(dtype)

    def token_bytes_table(self) -> list[bytes]:
        return [bytes([i]) for i in range(256)] + [b""]

    def to_dict(self) -> dict:
        return {"type": "byte"}

    @classmethod
    def from_dict(cls, data: dict) -> ByteTokenizer:
        return cls()
