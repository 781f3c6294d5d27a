"""Read a JSON file that came from outside (a run directory, an export): only a bounded regular file.

    cfg = read_json(run / "config.json", "export or train the run again", CheckpointError)
    data = read_json(path, "prepare the data again", DataError)   # TinyLMError subclass, one line

A run directory is hostile input: its config.json may be a symlink to /dev/zero or a FIFO (read
without a limit: all memory, or a hang), megabytes of nested brackets (RecursionError in ``json``)
or not UTF-8. Each of these ends as one error line naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from tinylm.errors import TinyLMError

# A 32k-vocab BPE tokenizer.json takes about 1 MB (measured) and a config.json 2 KB: 64 MB leaves
# room for far larger vocabularies while a hostile file cannot take the memory.
MAX_JSON_BYTES = 64 * 2**20


def read_json(path: str | Path, fix: str, error: type[TinyLMError] = TinyLMError,
              max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The parsed JSON of ``path``; ``error(one line ending in fix)`` if it cannot be read as such."""
    path = Path(path)
    try:
        raw = read_regular_file(path, max_bytes + 1)  # one byte more: tells a file at the cap from a larger one
        if raw is None:
            problem = "it is not a regular file (a device, FIFO or directory)"
        elif len(raw) > max_bytes:
            problem = f"it is larger than {max_bytes // 2**20} MB"
        else:
            return json.loads(raw.decode("utf-8"))
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    except RecursionError:
        problem = "it is nested too deeply"
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError
        problem = f"it is not UTF-8 JSON ({type(exc).__name__})"
    raise error(f"cannot read {path}: {problem}; {fix}")


def read_regular_file(path: str | Path, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of ``path``, or None if it is not a regular file; OSError if it cannot be opened.

    Opened without blocking, then checked with fstat (no race with a swap): a FIFO in its place would
    otherwise hold the reading thread until something writes to it, and /dev/zero never ends.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(limit)
