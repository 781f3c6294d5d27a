"""Prepare a corpus once: tokenize it in a stream and write token shards that training memory-maps.

    prepare(["books/", "tiny.parquet"], "data/books", PrepareOptions(tokenizer="bpe", vocab_size=4096))

The output directory holds ``train.bin`` and ``val.bin`` (raw token ids, uint16 when the vocabulary
fits, else uint32), ``tokenizer.json`` and ``meta.json`` (kind, vocab size, dtype, tokens and UTF-8
bytes per split, every source with its size and sha256). It is written into a temp directory beside
the target, synced to disk and renamed at the end: an interrupted prepare (or a power loss) leaves no
dataset that looks complete. ``out`` may not be a symlink, hold the current directory or hold a source.
Documents are joined with the end-of-text token (byte, BPE) or a blank line (char, several documents).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tinylm.atomic import atomic_write_text, hold_interrupts, process_is_gone
from tinylm.data.shards import META_NAME, TOKENIZER_NAME, dtype_for
from tinylm.data.sources import SourceFiles, expand_sources, file_sha256, iter_pieces, split_safely
from tinylm.data.tokenizer import ByteTokenizer, CharTokenizer, Tokenizer, code_points
from tinylm.errors import DataError

CHAR_SEPARATOR = "\n\n"
BATCH_CHARS = 4 << 20  # text handed to the tokenizer at once (BPE encodes a batch on every core)
COPY_BYTES = 8 << 20
MAX_CODE_POINT = 0x10FFFF


@dataclass
class PrepareOptions:
    tokenizer: str = "char"  # "char", "byte" or "bpe"
    vocab_size: int = 4096  # BPE only
    text_field: str = "text"
    val_fraction: float = 0.1
    val_docs: int = 0  # hold out the last N whole documents instead of the last val_fraction of tokens
    encoding_errors: str = "strict"  # or "replace"
    bpe_sample_mb: float = 200.0
    force: bool = False
    progress: bool = True
    version: str = ""
    keep_crlf: bool = False  # off: Windows line endings (CR LF) are read as LF


def prepare(sources: list[str], out: str | Path, opts: PrepareOptions, tokenizer: Tokenizer | None = None) -> dict:
    """Tokenize ``sources`` into the dataset directory ``out``; returns its meta.json content.

    ``tokenizer``: encode with this one (a run's) instead of building ``opts.tokenizer`` from the corpus.
    """
    _restore_interrupted_swap(Path(out).absolute())
    out = _checked_out(Path(out), opts.force)
    found = expand_sources(sources)
    _refuse_sources_inside(found, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:  # made inside the try: a Ctrl-C right after mkdir still reaches the cleanup below
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        meta = _write_dataset(found, tmp, opts, tokenizer)
        with hold_interrupts():  # the old dataset goes only when the new one takes its place
            _swap_into_place(tmp, out)
        return meta
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise DataError(f"the disk filled while writing {out} (the corpus needs about "
                            f"{found.total_bytes * 2 / 1e6:,.0f} MB); free space and run prepare again") from None
        raise
    finally:
        with hold_interrupts():  # a second Ctrl-C must not leave half a temp dir
            shutil.rmtree(tmp, ignore_errors=True)


def _checked_out(out: Path, force: bool) -> Path:
    """``out`` made absolute, refused where replacing it could destroy something that is not this dataset.

    Resolved first: ``--out .`` has no name to put a temp dir beside, and its rmtree would empty the
    shell's directory. A symlink is refused, not followed: replacing it would delete where it points.
    """
    if out.is_symlink():
        raise DataError(f"--out {out} is a symbolic link; give the directory it points to ({out.resolve()}) "
                        "or another --out")
    out = out.resolve()
    if Path.cwd().is_relative_to(out):
        raise DataError(f"--out {out} is the current directory or holds it; run prepare from outside it "
                        "or choose another --out")
    if (out / META_NAME).exists() and not force:
        raise DataError(f"{out} already holds a prepared dataset; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and not (out / META_NAME).exists() and any(out.iterdir()):
        # never delete files that are not a dataset, --force or not
        raise DataError(f"{out} is a directory with other files in it, not a dataset; choose another --out")
    return out


def _refuse_sources_inside(found: SourceFiles, out: Path) -> None:
    """Replacing ``out`` must not delete what it was made from (``prepare out/tokenizer.json --out out``)."""
    inside = [p for p in found.files if p.resolve().is_relative_to(out)]
    if inside:
        raise DataError(f"source {inside[0]} is inside --out {out}, which prepare replaces; "
                        "move the source out or choose another --out")


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``. An old dataset is renamed aside first and deleted only afterwards, so
    no kill leaves ``out`` empty-handed while a large rmtree runs: between the two renames the old one
    sits whole at ``.{name}.old-PID``, and the next prepare of ``out`` puts it back."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    _fsync(out.parent)  # the renames themselves survive a power loss
    shutil.rmtree(old, ignore_errors=True)


def _restore_interrupted_swap(out: Path) -> None:
    """A prepare killed between its two renames left the old dataset aside and ``out`` missing: put it back."""
    for aside in sorted(out.parent.glob(f".{out.name}.old-*")):
        if process_is_gone(aside.name.rsplit("-", 1)[-1]):
            if not out.exists() and not out.is_symlink():
                aside.rename(out)
            else:  # the swap finished; only the deletion was cut short
                shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_temp_dirs(out: Path) -> None:
    """Temp dirs of earlier prepares of ``out`` whose process is gone (killed with SIGKILL, power loss)."""
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if process_is_gone(pid):
            shutil.rmtree(stale, ignore_errors=True)


def build_tokenizer(found: SourceFiles, opts: PrepareOptions) -> Tokenizer:
    """Byte needs nothing; char reads the corpus once for its characters; BPE trains on a sample."""
    if opts.tokenizer == "byte":
        return ByteTokenizer()
    pieces = iter_pieces(found.files, opts.text_field, opts.encoding_errors, keep_crlf=opts.keep_crlf)
    if opts.tokenizer == "char":
        seen = np.zeros(MAX_CODE_POINT + 1, dtype=bool)  # seen[c]: code point c occurs in the corpus
        docs = 0
        for text, new_doc in pieces:
            seen[code_points(text)] = True
            docs += new_doc
        chars = {chr(c) for c in np.flatnonzero(seen)}
        return CharTokenizer(sorted(chars | (set(CHAR_SEPARATOR) if docs > 1 else set())))
    if opts.tokenizer == "bpe":
        from tinylm.data.bpe import BPETokenizer

        return BPETokenizer.train(_sample(pieces, int(opts.bpe_sample_mb * 1e6)), opts.vocab_size)
    raise DataError(f"unknown tokenizer {opts.tokenizer!r}; use char, byte or bpe")


def _sample(pieces, limit: int):
    seen = 0
    for text, _ in pieces:
        yield text
        seen += len(text)
        if seen >= limit:
            return


def _write_dataset(found: SourceFiles, tmp: Path, opts: PrepareOptions, tokenizer: Tokenizer | None) -> dict:
    began = time.perf_counter()
    tokenizer = tokenizer or build_tokenizer(found, opts)
    dtype = dtype_for(tokenizer.vocab_size)
    all_path = tmp / "tokens.bin"
    built = time.perf_counter()
    doc_starts, total_bytes = _write_tokens(found, tokenizer, dtype, all_path, opts)
    seconds = {"tokenizer": round(built - began, 3), "encode": round(time.perf_counter() - built, 3)}
    n = all_path.stat().st_size // np.dtype(dtype).itemsize
    if opts.val_docs:
        if opts.val_docs >= len(doc_starts):
            raise DataError(f"--val-docs {opts.val_docs} leaves no training data: the corpus has "
                            f"{len(doc_starts)} document(s)")
        n_train = doc_starts[-opts.val_docs]
    else:
        n_train = int(n * (1 - opts.val_fraction))
    splits = _split_file(all_path, tmp, dtype, n, n_train)
    val = _counts(splits["val"], dtype, tokenizer.token_bytes())
    counts = {"train": {"tokens": n_train, "bytes": total_bytes - val["bytes"]}, "val": val}
    meta = {
        "format": 1, "tokenizer": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "dtype": np.dtype(dtype).name,
        "splits": counts,
        "documents": len(doc_starts), "skipped_binary_files": len(found.skipped_binary),
        "sources": [{"path": str(p), "size": p.stat().st_size, "sha256": file_sha256(p)} for p in found.files],
        "tinylm_version": opts.version, "seconds": seconds,
    }
    tokenizer.save(tmp / TOKENIZER_NAME)
    for path in (*splits.values(), tmp / TOKENIZER_NAME, tmp):  # on disk before the meta.json that vouches for them
        _fsync(path)
    atomic_write_text(tmp / META_NAME, json.dumps(meta, indent=2))  # last: its presence marks a whole dataset
    return meta


def _write_tokens(found: SourceFiles, tokenizer: Tokenizer, dtype, path: Path,
                  opts: PrepareOptions) -> tuple[list[int], int]:
    """Encode every piece in batches, appending ids to ``path``.

    Returns each document's first token index and the UTF-8 bytes of all the text encoded: every
    tokenizer here round-trips exactly, so that is also the bytes the tokens stand for.
    """
    from tqdm import tqdm

    bar = tqdm(total=found.total_bytes, unit="B", unit_scale=True, unit_divisor=1000, desc="prepare",
               disable=not opts.progress or None, dynamic_ncols=True, leave=False)
    separator = None if tokenizer.eot_id is None else np.array([tokenizer.eot_id], dtype=dtype)
    text_bytes = 0
    with open(path, "wb") as f, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        out = _TokenFile(f, separator)
        pieces = iter_pieces(found.files, opts.text_field, opts.encoding_errors, bar.update, opts.keep_crlf)
        for batch in _batches(pieces, blank_line_between=separator is None):
            texts = [text for _, text in batch]
            for (new_doc, _), ids in zip(batch, _encode_all(tokenizer, texts, dtype, pool)):
                out.write(new_doc, ids)
            text_bytes += sum(len(text.encode("utf-8")) for text in texts)
            bar.set_postfix(tokens=f"{out.written:,}")
    bar.close()
    return out.doc_starts, text_bytes


def _batches(pieces: Iterator[tuple[str, bool]], blank_line_between: bool) -> Iterator[list[tuple[bool, str]]]:
    """(starts a document, text) pieces in lists of about BATCH_CHARS characters, the last one shorter."""
    batch, batch_chars, first = [], 0, True
    for text, new_doc in pieces:
        if new_doc and blank_line_between and not first:
            text = CHAR_SEPARATOR + text  # char: a blank line between documents
        first = first and not new_doc
        batch.append((new_doc, text))
        batch_chars += len(text)
        if batch_chars >= BATCH_CHARS:
            yield batch
            batch, batch_chars = [], 0
    yield batch


class _TokenFile:
    """Appends ids to an open file; marks where each document starts, after an end-of-text between two."""

    def __init__(self, f: BinaryIO, separator: np.ndarray | None):
        self.f, self.separator = f, separator
        self.written = 0
        self.doc_starts: list[int] = []

    def write(self, new_doc: bool, ids: np.ndarray) -> None:
        if new_doc:
            if self.doc_starts and self.separator is not None:
                self.f.write(self.separator)
                self.written += 1
            self.doc_starts.append(self.written)
        self.f.write(ids)
        self.written += len(ids)


def _encode_all(tokenizer: Tokenizer, texts: list[str], dtype, pool: ThreadPoolExecutor):
    """The ids (``dtype``) of each text, on every core.

    char/byte: one text per thread (numpy's gathers and casts run without the GIL). BPE: ~64 KB parts
    of all the texts in one batch, which the library spreads over the cores itself.
    """
    if not hasattr(tokenizer, "encode_batch"):
        return pool.map(lambda text: tokenizer.encode_array(text, dtype), texts)
    parts = [split_safely(t, 64 << 10) for t in texts]
    ids = iter(tokenizer.encode_batch([p for ps in parts for p in ps], dtype))
    return (np.concatenate([next(ids) for _ in ps]) if ps else np.zeros(0, dtype) for ps in parts)


def _split_file(all_path: Path, tmp: Path, dtype, n: int, n_train: int) -> dict[str, Path]:
    """train.bin = the first n_train tokens, val.bin = the rest: the tail copied in chunks, the file truncated.

    Plain reads, not a memmap: mapped pages would count in the process's RSS.
    """
    itemsize = np.dtype(dtype).itemsize
    with open(all_path, "rb") as src, open(tmp / "val.bin", "wb") as dst:
        src.seek(n_train * itemsize)
        dst.writelines(iter(lambda: src.read(COPY_BYTES), b""))
    os.truncate(all_path, n_train * itemsize)
    all_path.rename(tmp / "train.bin")
    return {name: tmp / f"{name}.bin" for name in ("train", "val")}


def _counts(path: Path, dtype, table: np.ndarray) -> dict[str, int]:
    """Tokens in a shard and the UTF-8 bytes they stand for, read in chunks."""
    tokens = n_bytes = 0
    with open(path, "rb") as f:
        while True:
            ids = np.fromfile(f, dtype=dtype, count=COPY_BYTES // np.dtype(dtype).itemsize)
            if not len(ids):
                return {"tokens": tokens, "bytes": n_bytes}
            tokens += len(ids)
            n_bytes += int(np.bincount(ids, minlength=len(table))[:len(table)] @ table)  # (V,) counts x bytes
