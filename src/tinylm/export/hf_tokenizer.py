"""The character tokenizer as a Hugging Face ``tokenizers`` model, for ``AutoTokenizer``.

    save_hf_tokenizer(CharTokenizer.from_text("hello"), Path("exports/a1-hf"))
    AutoTokenizer.from_pretrained("exports/a1-hf")("hell")["input_ids"] == [1, 0, 2, 2]

A BPE model whose vocabulary is tinylm's characters and which has no merges splits any text into
single characters, each mapped to tinylm's id: the same ids as ``CharTokenizer.encode``. No normaliser,
no pre-tokenizer (spaces and newlines are ordinary characters) and no special tokens. The ``Fuse``
decoder joins tokens without spaces and ``clean_up_tokenization_spaces=False`` keeps " ," as it is,
so decoding gives the text back exactly. A character tinylm never saw is dropped by the HF tokenizer
(tinylm refuses it).
"""

from __future__ import annotations

from pathlib import Path

from tinylm.data import CharTokenizer


def hf_tokenizer(tokenizer: CharTokenizer):
    """A ``transformers.PreTrainedTokenizerFast`` that encodes and decodes like ``tokenizer``."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(vocab=dict(tokenizer.stoi), merges=[]))
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False,
                                   model_max_length=1_000_000_000)


def save_hf_tokenizer(tokenizer: CharTokenizer, out: Path) -> None:
    """tokenizer.json (the ``tokenizers`` model) and tokenizer_config.json into ``out``."""
    hf_tokenizer(tokenizer).save_pretrained(out)
