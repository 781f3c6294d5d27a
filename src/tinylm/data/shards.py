"""A prepared dataset directory (``tinylm prepare``): token shards opened as memory maps.

    data = open_prepared("data/books")        # raises DataError unless it is a whole dataset
    data.tokenizer, data.train, data.val       # train/val: (N,) np.memmap of uint16 or uint32 ids
    data.meta["splits"]["val"]["bytes"]        # UTF-8 bytes of the val split: bits per byte divide by it
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinylm.data.saved import load_tokenizer
from tinylm.data.tokenizer import Tokenizer
from tinylm.errors import DataError

META_NAME = "meta.json"
TOKENIZER_NAME = "tokenizer.json"


def dtype_for(vocab_size: int):
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def is_prepared(path: str | Path) -> bool:
    return Path(path).is_dir()


@dataclass
class PreparedData:
    path: Path
    meta: dict
    tokenizer: Tokenizer
    train: np.ndarray  # (N_train,) memmap
    val: np.ndarray  # (N_val,) memmap


def open_prepared(path: str | Path) -> PreparedData:
    path = Path(path)
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise DataError(f"{path} is not a prepared dataset (no {META_NAME}); make one with "
                        f"`tinylm prepare SOURCE... --out {path}`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"])
        counts = {name: int(meta["splits"][name]["tokens"]) for name in ("train", "val")}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_path} is damaged ({exc!r}); prepare the data again") from None
    tokenizer = load_tokenizer(path / TOKENIZER_NAME)
    shards = {}
    for name, count in counts.items():
        shard = path / f"{name}.bin"
        if not shard.is_file() or shard.stat().st_size != count * dtype.itemsize:
            raise DataError(f"{shard} is missing or has the wrong size for {count:,} tokens; prepare the data again")
        shards[name] = np.memmap(shard, dtype=dtype, mode="r", shape=(count,)) if count else np.zeros(0, dtype)
    return PreparedData(path, meta, tokenizer, shards["train"], shards["val"])
