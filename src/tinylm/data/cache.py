"""``--data file.txt``: the text file is prepared once into the data cache and memory-mapped after that.

    path = cached_dataset("notes.txt")               # $TINYLM_DATA_DIR/prepared/<sha256>-<spec>/
    data = open_prepared(path)                       # the same tokens as encoding the whole text

An entry is keyed by the file's sha256 and by how it was tokenized and split (the char tokenizer of
the text itself, or a run's tokenizer; CR LF handling; the val fraction), so an edited file or another
tokenizer gets a new entry and an unchanged one is reused. Entries are written by ``prepare`` into a
private directory and renamed into place: processes that prepare the same file at once (the ranks of
a torchrun job) each build one and the first rename wins; a damaged entry is built again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from tinylm.atomic import process_is_gone
from tinylm.data.prepare import PrepareOptions, prepare
from tinylm.data.shards import META_NAME, open_prepared
from tinylm.data.sources import MissingFieldError
from tinylm.data.text import check_text_file, data_dir
from tinylm.data.tokenizer import Tokenizer, UnknownCharactersError
from tinylm.errors import DataError

FORMAT = 1  # bump when prepare's output for the same text changes


def cached_dataset(path: str | Path, keep_crlf: bool = False, val_fraction: float = 0.1,
                   tokenizer: Tokenizer | None = None) -> Path:
    """The cache entry of text file ``path``, prepared now unless an intact one exists."""
    digest = check_text_file(path)
    own = _entry(digest, keep_crlf, val_fraction, None)
    if tokenizer is not None and _intact(own) and open_prepared(own).tokenizer.to_dict() == tokenizer.to_dict():
        return own  # the run was trained on this very file: its own entry has the run's tokenizer
    entry = own if tokenizer is None else _entry(digest, keep_crlf, val_fraction, tokenizer)
    if _intact(entry):
        return entry
    return _build(Path(path), entry, PrepareOptions(val_fraction=val_fraction, keep_crlf=keep_crlf, progress=False),
                  tokenizer)


def _entry(digest: str, keep_crlf: bool, val_fraction: float, tokenizer: Tokenizer | None) -> Path:
    spec = {"format": FORMAT, "keep_crlf": keep_crlf, "val_fraction": val_fraction,
            "tokenizer": "char of the text" if tokenizer is None else tokenizer.to_dict()}
    spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return data_dir() / "prepared" / f"{digest[:32]}-{spec_hash[:12]}"


def _intact(entry: Path) -> bool:
    if not (entry / META_NAME).is_file():
        return False
    try:
        open_prepared(entry)
        return True
    except DataError:
        return False


def unseen_characters(name: str | Path, exc: UnknownCharactersError) -> DataError:
    """The error for a data file (resumed, evaluated or fine-tuned on) that the run's char tokenizer cannot encode."""
    shown = " ".join(repr(ch) for ch in exc.unknown)
    return DataError(f"data file {name} has characters this run never saw in training: {shown}; give the data the "
                     "run was trained on (--data), text without them, or train a new run on this file (a byte or "
                     "BPE tokenizer covers any text)")


def _build(text_file: Path, entry: Path, opts: PrepareOptions, tokenizer: Tokenizer | None) -> Path:
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(entry.parent)
    private = entry.parent / f".build-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        prepare([str(text_file)], private, opts, tokenizer)
    except UnknownCharactersError as exc:
        raise unseen_characters(text_file, exc) from None
    except MissingFieldError as exc:  # train has no --text-field: prepare names the field
        raise DataError(f"{exc.where}; prepare it with `tinylm prepare {text_file} --text-field NAME --out DIR` "
                        "and train with --data DIR") from None
    try:
        if entry.exists() and not _intact(entry):
            shutil.rmtree(entry, ignore_errors=True)  # damaged: ours replaces it
        os.rename(private, entry)
    except OSError:
        if not _intact(entry):  # the rename lost to another process, whose entry is whole; otherwise say so
            raise DataError(f"cannot store the prepared data in {entry}; check that the cache directory is "
                            "writable, or set TINYLM_DATA_DIR to another one") from None
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return entry


def _remove_abandoned_builds(parent: Path) -> None:
    """Private build directories of processes that are gone (killed before their rename)."""
    for stale in parent.glob(".build-*"):
        pid = stale.name.split("-")[1]
        if process_is_gone(pid):
            shutil.rmtree(stale, ignore_errors=True)
