"""A tokenizer of any kind from what was saved: a run's checkpoint, a tokenizer.json.

    tok = load_tokenizer("runs/a1/tokenizer.json")    # char, byte or BPE, by the type it was saved with
    tok = tokenizer_from_dict(ckpt["tokenizer"])       # old char checkpoints ({"type": "char", ...}) too
"""

from __future__ import annotations

import json
from pathlib import Path

from tinylm.data.bpe import BPETokenizer
from tinylm.data.tokenizer import ByteTokenizer, CharTokenizer, Tokenizer
from tinylm.errors import DataError


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
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read tokenizer {path} ({exc}); prepare the data again") from None
    return tokenizer_from_dict(data)
