"""Data: corpora (``text``), the character tokenizer (``tokenizer``) and random batches (``loader``).

    from tinylm.data import BatchLoader, CharTokenizer, load_text, split
"""

from tinylm.data.loader import BatchLoader
from tinylm.data.text import data_dir, load_text, read_text, split, tinyshakespeare_path
from tinylm.data.tokenizer import CharTokenizer, UnknownCharactersError

__all__ = ["BatchLoader", "CharTokenizer", "UnknownCharactersError", "data_dir", "load_text", "read_text",
           "split", "tinyshakespeare_path"]
