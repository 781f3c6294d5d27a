"""Character-level tokenizer: every distinct character of the training text is one token.

    tok = CharTokenizer.from_text("hello")   # vocabulary: sorted unique chars "ehlo"
    tok.encode("hell") -> [1, 0, 2, 2];  tok.decode([1, 0, 2, 2]) -> "hell"

It is saved with every run (``tokenizer.json``) so a checkpoint can always decode its own output.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinylm.atomic import atomic_write_text
from tinylm.errors import TinyLMError


class UnknownCharactersError(TinyLMError):
    """Text contains characters that are not in the vocabulary."""


class CharTokenizer:
    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}  # string -> integer
        self.itos = dict(enumerate(self.chars))  # integer -> string

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_characters(self, text: str) -> list[str]:
        return sorted(set(text) - self.stoi.keys())

    def encode(self, text: str) -> list[int]:
        unknown = self.unknown_characters(text)
        if unknown:
            shown = " ".join(repr(ch) for ch in unknown)
            raise UnknownCharactersError(
                f"the text contains characters this model never saw: {shown}; remove them from the prompt"
            )
        return [self.stoi[ch] for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict) -> "CharTokenizer":
        return cls(data["chars"])

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
