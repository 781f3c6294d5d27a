"""A prepared dataset directory (``tinylm prepare``): token shards opened as memory maps.

    data = open_prepared("data/books")        # raises DataError unless it is a whole dataset
    data.tokenizer, data.train, data.val       # train/val: (N,) np.memmap of uint16 or uint32 ids
    data.meta["splits"]["val"]["bytes"]        # UTF-8 bytes of the val split: bits per byte divide by it
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinylm.data.saved import load_tokenizer
from tinylm.data.tokenizer import Tokenizer
from tinylm.errors import DataError
from tinylm.jsonfile import read_json

META_NAME = "meta.json"
TOKENIZER_NAME = "tokenizer.json"
SHARD_DTYPES = ("uint16", "uint32")  # all that dtype_for gives: ids are never negative, never fractions


def dtype_for(vocab_size: int):
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def is_prepared(path: str | Path) -> bool:
    return Path(path).is_dir()


def holds_dataset(path: Path) -> bool:
    """Whether a directory looks like prepare's output (damaged or not): its files are not a corpus."""
    return (path / META_NAME).is_file() and (path / TOKENIZER_NAME).is_file()


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
    meta = read_json(meta_path, "prepare the data again", DataError)
    problem = _meta_problem(meta)
    if problem:
        raise DataError(f"{meta_path} is damaged ({problem}); prepare the data again")
    dtype = np.dtype(meta["dtype"])
    counts = {name: meta["splits"][name]["tokens"] for name in ("train", "val")}
    tokenizer = load_tokenizer(path / TOKENIZER_NAME)
    shards = {}
    for name, count in counts.items():
        shard = path / f"{name}.bin"
        if not shard.is_file() or shard.stat().st_size != count * dtype.itemsize:
            raise DataError(f"{shard} is missing or has the wrong size for {count:,} tokens; prepare the data again")
        shards[name] = np.memmap(shard, dtype=dtype, mode="r", shape=(count,)) if count else np.zeros(0, dtype)
    return PreparedData(path, meta, tokenizer, shards["train"], shards["val"])


def _meta_problem(meta) -> str:
    """What is wrong with meta.json's content, or "" when every field readers use is sound.

    Checked here, once: training divides by ``splits.val.bytes`` and sizes memory maps by the token counts.
    """
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        return "not a JSON object with splits"
    if meta.get("dtype") not in SHARD_DTYPES:
        return f"dtype {_shown(meta.get('dtype'))} is not {' or '.join(SHARD_DTYPES)}"
    for name in ("train", "val"):
        split = meta["splits"].get(name)
        for key in ("tokens", "bytes"):
            value = split.get(key) if isinstance(split, dict) else None
            if type(value) is not int or value < 0:  # not bool, float, inf or NaN either
                return f"splits.{name}.{key} is {_shown(value)}, not a whole number >= 0"
    return ""


def _shown(value) -> str:
    return repr(value)[:40]
