"""Byte-level BPE on Hugging Face ``tokenizers``: trained on a corpus, saved as a standard tokenizer.json.

    tok = BPETokenizer.train(iter_of_texts, vocab_size=4096)
    ids = tok.encode("Hello")                    # any UTF-8 text; round-trip exact
    tok.save("tokenizer.json")                   # transformers.PreTrainedTokenizerFast(tokenizer_file=...) loads it

Tokens are byte sequences written with GPT-2's printable stand-ins for bytes; ``token_bytes_table``
undoes that mapping so streaming and bits per byte work on real UTF-8 bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import numpy as np

from tinylm.data.tokenizer import Tokenizer
from tinylm.errors import DataError

EOT = "<|endoftext|>"
MIN_VOCAB = 257  # 256 bytes and the end-of-text token


def byte_stand_ins() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: printable stand-in character -> byte value."""
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    stand_in = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):  # the remaining bytes take code points from 256 up, in byte order
        if b not in stand_in:
            stand_in[b] = chr(256 + shifted)
            shifted += 1
    return {ch: b for b, ch in stand_in.items()}


class BPETokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.hf.encode_special_tokens = True  # "<|endoftext|>" typed in text is text, not the separator
        self.eot_id = self.hf.token_to_id(EOT)
        if self.eot_id is None:
            raise DataError(f"BPE tokenizer has no {EOT} token; prepare the data again")
        self._table: list[bytes] | None = None

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096) -> BPETokenizer:
        require_module("tokenizers", "BPE tokenizers")
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < MIN_VOCAB:
            raise DataError(f"--vocab-size {vocab_size} is too small for byte-level BPE; use at least {MIN_VOCAB}")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator(texts, trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode_array(self, text: str, dtype=np.int64) -> np.ndarray:
        return np.array(self.hf.encode(text, add_special_tokens=False).ids, dtype=dtype)

    def encode_batch(self, texts: list[str], dtype=np.int64) -> Iterator[np.ndarray]:
        """Many texts at once: the library spreads them over the CPU cores."""
        encode = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)  # fast: no offsets computed
        for enc in encode(texts, add_special_tokens=False):
            yield np.array(enc.ids, dtype=dtype)

    def token_bytes_table(self) -> list[bytes]:
        if self._table is None:
            to_byte = byte_stand_ins()
            table = []
            for i in range(self.vocab_size):
                token = self.hf.id_to_token(i)
                table.append(b"" if i == self.eot_id else bytes(to_byte[ch] for ch in token))
            self._table = table
        return self._table

    def to_dict(self) -> dict:
        return json.loads(self.hf.to_str())

    @classmethod
    def from_dict(cls, data: dict) -> BPETokenizer:
        require_module("tokenizers", "BPE tokenizers")
        from tokenizers import Tokenizer as HFTokenizer

        try:
            tokenizer = cls(HFTokenizer.from_str(json.dumps(data)))
        except Exception as exc:  # noqa: BLE001 - the library raises its own types for a malformed file
            raise DataError(f"the BPE tokenizer description is malformed ({exc}); prepare the data again") from None
        tokenizer.check_byte_level()
        return tokenizer

    def check_byte_level(self) -> None:
        """Ids 0..V-1 without gaps, every token but end-of-text spelled in GPT-2's byte stand-ins.

        Hugging Face loads other BPE files too; ``token_bytes_table`` and the shards need these two facts.
        """
        vocab = self.hf.get_vocab(with_added_tokens=True)
        if sorted(vocab.values()) != list(range(self.vocab_size)):
            raise DataError(f"the BPE tokenizer's ids are not 0..{self.vocab_size - 1} without gaps; "
                            "it was not made by tinylm prepare: prepare the data again")
        to_byte = byte_stand_ins()
        foreign = [token for token, i in vocab.items() if i != self.eot_id and not set(token) <= to_byte.keys()]
        if foreign:
            raise DataError(f"the BPE tokenizer's token {foreign[0][:20]!r} is not GPT-2 byte-level (no bytes "
                            "stand for it); prepare the data again with a byte-level BPE")


def require_module(name: str, what: str) -> None:
    """One line naming the extra to install when an optional package is missing."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        raise DataError(f"{what} need the {name} package: pip install -e '.[data]'")
