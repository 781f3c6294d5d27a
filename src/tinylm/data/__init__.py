"""Data: corpora (``text``), tokenizers (``tokenizer``, ``bpe``, ``saved``), random batches (``loader``)
and prepared token shards (``shards``, written by ``prepare`` for ``tinylm prepare``).

    from tinylm.data import BatchLoader, CharTokenizer, load_text, split, load_tokenizer
"""

from tinylm.data.loader import BatchLoader
from tinylm.data.saved import load_tokenizer, tokenizer_from_dict
from tinylm.data.text import data_dir, load_text, read_text, split, tinyshakespeare_path
from tinylm.data.tokenizer import (
           ByteTokenizer,
           CharTokenizer,
           Tokenizer,
           UnknownCharactersError,
)

__all__ = ["BatchLoader", "ByteTokenizer", "CharTokenizer", "Tokenizer", "UnknownCharactersError", "data_dir",
           "load_text", "load_tokenizer", "read_text", "split", "tinyshakespeare_path", "tokenizer_from_dict"]
