"""Write files so that a crash or Ctrl-C at any moment leaves the old file or the new one, whole.

    atomic_write(path, lambda f: torch.save(payload, f))
    atomic_write_text(path, json.dumps(config))

A Ctrl-C that arrives mid-write is held back until the file is in place, then raised: a
KeyboardInterrupt inside ``torch.save``'s C++ zip writer otherwise turns into a RuntimeError or
even an abort, instead of the clean "interrupted" exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from tinylm.errors import TinyLMError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def hold_interrupts() -> Iterator[None]:
    """Run the block to its end even if SIGINT arrives, then raise the KeyboardInterrupt it would have raised."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # only the main thread can set handlers; None means a handler Python cannot restore
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # hand it to the previous handler, as if it arrived now


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync it, then rename it over ``path``."""
    with hold_interrupts():
        _write_then_rename(Path(path), write)


def _write_then_rename(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
        try:
            os.replace(tmp, path)  # atomic on POSIX: readers see either the old file or the new one
        except IsADirectoryError:
            raise TinyLMError(f"cannot write {path}: a directory is in its place; move it away and try "
                              "again") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def process_is_gone(pid: str) -> bool:
    """Whether no process has id ``pid`` (a temp file's owner that was killed): safe to clean up after."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False
