"""A tokenizer of any kind from what was saved: a run's checkpoint, a tokenizer.json.

    tok = load_tokenizer("runs/a1/tokenizer.json")    # char, byte or BPE, by the type it was saved with
    tok = tokenizer_from_dict(ckpt["tokenizer"])       # old char checkpoints ({"type": "char", ...}) too
"""

from __future__ import annotations

from pathlib import Path

from tinylm.data.bpe import BPETokenizer
from tinylm.data.tokenizer import ByteTokenizer, CharTokenizer, Tokenizer
from tinylm.errors import DataError
from tinylm.jsonfile import read_json


def tokenizer_from_dict(data) -> Tokenizer:
    """The tokenizer a saved dict describes: ``{"type": "char"|"byte", ...}`` or a Hugging Face BPE file."""
    if isinstance(data, dict) and data.get("type") == "char" and isinstance(data.get("chars"), list):
        return CharTokenizer.from_dict(data)
    if isinstance(data, dict) and data.get("type") == "byte":
        return ByteTokenizer()
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and data["model"].get("type") == "BPE":
        return BPETokenizer.from_dict(data)
    raise DataError("unknown tokenizer description (expected type char, byte or a byte-level BPE tokenizer.json)")


def load_tokenizer(path: str | Path) -> Tokenizer:
    return tokenizer_from_dict(read_json(path, "prepare the data again", DataError))
