"""Text corpora: download and verify Tiny Shakespeare, read a UTF-8 file, split token ids.

    text = load_text()                          # Tiny Shakespeare, downloaded once into the cache
    data = torch.tensor(tok.encode(text))       # (N,) token ids
    train_data, val_data = split(data)          # first 90% / last 10%

The cache directory is ``$TINYLM_DATA_DIR`` (default ``~/.cache/tinylm``). Offline, put the file at
the path the error message names and nothing is downloaded.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import urllib.request
from pathlib import Path

import torch

from tinylm.atomic import atomic_write
from tinylm.errors import DataError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SIZE = 1_115_394
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def data_dir() -> Path:
    return Path(os.environ.get("TINYLM_DATA_DIR") or Path.home() / ".cache" / "tinylm")


def _problem_with(blob: bytes) -> str | None:
    if len(blob) != TINYSHAKESPEARE_SIZE:
        return f"size {len(blob)} bytes, expected {TINYSHAKESPEARE_SIZE}"
    if hashlib.sha256(blob).hexdigest() != TINYSHAKESPEARE_SHA256:
        return "sha256 does not match"
    return None


def tinyshakespeare_path() -> Path:
    """The verified cache file, downloading it on first use."""
    path = data_dir() / "tinyshakespeare.txt"
    if path.exists() and not path.is_file():
        raise DataError(f"cached corpus {path} is not a regular file (a directory or device); remove it to "
                        "download again, or set TINYLM_DATA_DIR to another directory")
    if path.exists():
        problem = _problem_with(path.read_bytes())
        if problem:
            raise DataError(f"cached corpus {path} is damaged ({problem}); delete it to download again")
        return path
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=30) as response:
            blob = response.read()
    except OSError as exc:
        raise DataError(
            f"cannot download Tiny Shakespeare from {TINYSHAKESPEARE_URL} ({exc}); "
            f"offline, copy input.txt from there to {path}"
        ) from None
    problem = _problem_with(blob)
    if problem:
        raise DataError(f"downloaded Tiny Shakespeare is wrong ({problem}); copy a good input.txt to {path}")
    atomic_write(path, lambda f: f.write(blob))
    return path


def read_text(path: str | Path, keep_crlf: bool = False) -> str:
    """Read a UTF-8 corpus, refusing missing, empty and non-UTF-8 files with a clear message.

    Windows line endings (CR LF) become LF unless ``keep_crlf``: otherwise CR is a token of its own
    and a model trained on such a file refuses prompts typed elsewhere (and the reverse).
    """
    path = _existing_file(path)
    blob = path.read_bytes()
    if not blob.strip():
        raise _empty(path)
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc.start) from None
    return text if keep_crlf else text.replace("\r\n", "\n")


def check_text_file(path: str | Path) -> str:
    """The sha256 of a UTF-8 text file, read in 1 MB blocks; refuses what ``read_text`` refuses."""
    path = _existing_file(path)
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")()
    offset, blank = 0, True
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            held = len(decoder.getstate()[0])  # bytes of a character the last block cut in two
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, offset - held + exc.start) from None
            offset += len(block)
            blank = blank and not block.strip()
    if decoder.getstate()[0]:  # the file ends inside a character
        raise _not_utf8(path, offset - len(decoder.getstate()[0]))
    if blank:
        raise _empty(path)
    return digest.hexdigest()


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # /dev/null, a FIFO: prepare --out won't help
        raise DataError(f"data file {path} is not a regular file (a device, FIFO or socket); "
                        "give a UTF-8 text file or a prepared dataset directory")
    if not path.is_file():
        raise DataError(f"data file not found: {path} (a prepared dataset directory is made by "
                        f"`tinylm prepare SOURCE... --out {path}`)")
    return path


def _empty(path: Path) -> DataError:
    return DataError(f"data file {path} is empty; give a UTF-8 text file with some text in it")


def _not_utf8(path: Path, offset: int) -> DataError:
    return DataError(f"data file {path} is not UTF-8 (bad byte at offset {offset}); convert it, e.g. iconv -t utf-8")


def load_text(path: str | Path | None = None, keep_crlf: bool = False) -> str:
    """The text of ``path``, or Tiny Shakespeare when no path is given."""
    return read_text(path if path else tinyshakespeare_path(), keep_crlf)


def split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``1 - val_fraction`` of the tokens for training, the rest for validation."""
    n_train = int(len(data) * (1 - val_fraction))
    return data[:n_train], data[n_train:]
