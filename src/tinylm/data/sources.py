"""Where a corpus comes from: files, directories and globs, read as a stream of document pieces.

    files = expand_sources(["books/", "notes/*.md", "stories.jsonl.gz", "tiny.parquet"])
    for text, new_doc in iter_pieces(files.files, text_field="text"):
        ...   # text: at most ~1 MB; new_doc: True on the first piece of each document

A text file (any UTF-8 file) is one document, read in pieces cut after a newline; a ``.jsonl`` /
``.jsonl.gz`` line is one document (its ``text_field``); so is a ``.parquet`` row (read in record
batches). Files a directory or glob turns up are skipped and counted when binary (a NUL byte near the
start); a file named outright is text if it is UTF-8, NULs and all. A directory's hidden paths (.git,
prepare's temp dirs) and prepared datasets in it are not corpus. Nothing is read whole; text is cut
only where no token changes (``safe_cut``).
"""

from __future__ import annotations

import codecs
import glob
import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tinylm.data.shards import holds_dataset
from tinylm.errors import DataError

CHUNK_BYTES = 1 << 20
CUT_SEARCH = 1 << 16  # characters searched back for a safe cut before the rest waits for the next chunk
SNIFF_BYTES = 8192
SURROGATE = re.compile("[\ud800-\udfff]")  # JSON can escape one; UTF-8 cannot encode it


class MissingFieldError(DataError):
    """A .jsonl line or .parquet file without the text field; ``where`` says which (the fix is the command's)."""

    def __init__(self, where: str):
        super().__init__(f"{where}; name the field with --text-field")
        self.where = where


@dataclass
class SourceFiles:
    files: list[Path]
    skipped_binary: list[Path] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


def kind_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "text"


def _looks_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\x00" in f.read(SNIFF_BYTES)


def _matches(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        return _directory_files(path)
    if path.is_file():
        return [path]
    if glob.has_magic(source):
        return sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
    raise DataError(f"source not found: {source}; give text files, directories, globs, .jsonl(.gz) or .parquet files")


def _directory_files(root: Path) -> list[Path]:
    """Every file below ``root`` but hidden paths and prepared datasets (an --out inside its own source)."""
    found = []
    for folder, dirs, files in os.walk(root):  # like rglob: symlinked directories are not entered
        dirs[:] = [d for d in dirs if not d.startswith(".") and not holds_dataset(Path(folder, d))]
        found += [Path(folder, f) for f in files if not f.startswith(".") and Path(folder, f).is_file()]
    return sorted(found)


def expand_sources(sources: list[str]) -> SourceFiles:
    """Every file the sources name, in order, without duplicates; binary text files set aside."""
    found = SourceFiles([])
    seen: set[tuple[int, int]] = set()  # (device, inode): the same file through two names or a link
    for source in sources:
        matches = _matches(source)
        named = Path(source).is_file()  # asked for by name: UTF-8 decides, not a NUL byte
        if not matches:
            raise DataError(f"source {source} holds no files; point at a directory or glob with text in it")
        for path in matches:
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            if kind_of(path) == "text" and not named and _looks_binary(path):
                found.skipped_binary.append(path)
            else:
                found.files.append(path)
    if not found.files:
        example = f", e.g. {found.skipped_binary[0]}" if found.skipped_binary else ""
        raise DataError(f"no text in the sources: {len(found.skipped_binary)} binary file(s) skipped and none left "
                        f"(a NUL byte in the first {SNIFF_BYTES // 1024} KB{example}); "
                        "give UTF-8 text, .jsonl or .parquet files, or name a text file with NULs outright")
    return found


def safe_cut(text: str, limit: int, search: int | None = None) -> int:
    """The last index <= ``limit`` just after a newline between two non-space characters, or 0.

    Cutting text there changes no token of the char, byte or byte-level BPE tokenizers (BPE's
    pre-tokenizer never joins across such a newline), so pieces encode as the whole text would.
    ``search``: look no further back than this many characters (indented code has few such newlines).
    """
    end = min(limit, len(text) - 1)  # the character after the newline must be there to check
    lowest = 0 if search is None else max(0, end - search)
    while True:
        i = text.rfind("\n", lowest, end)
        if i <= 0:
            return 0
        if not text[i - 1].isspace() and not text[i + 1].isspace():
            return i + 1
        end = i


def split_safely(text: str, size: int) -> list[str]:
    """``text`` in parts of about ``size`` characters, cut only where ``safe_cut`` allows."""
    parts = []
    while len(text) > size:
        cut = safe_cut(text, size) or len(text)
        parts.append(text[:cut])
        text = text[cut:]
    return parts + [text] if text else parts


def iter_pieces(files: list[Path], text_field: str = "text", errors: str = "strict",
                on_bytes=None, keep_crlf: bool = False) -> Iterator[tuple[str, bool]]:
    """(text, new_doc) pieces of every document of ``files``; ``on_bytes(n)`` counts the input read.

    Windows line endings (CR LF) become LF unless ``keep_crlf``, as ``tinylm train --data file.txt``
    has always read them; a piece never ends between the two.
    """
    on_bytes = on_bytes or (lambda n: None)
    for path in files:
        kind = kind_of(path)
        if kind == "jsonl":
            pieces = _jsonl_pieces(path, text_field, errors, on_bytes)
        elif kind == "parquet":
            pieces = _parquet_pieces(path, text_field, on_bytes)
        else:
            pieces = _text_pieces(path, errors, on_bytes)
        if keep_crlf:
            yield from pieces
        else:
            yield from ((text.replace("\r\n", "\n"), new_doc) for text, new_doc in pieces)


def _text_pieces(path: Path, errors: str, on_bytes) -> Iterator[tuple[str, bool]]:
    """Pieces of one text file. A read ahead tells the last chunk apart: a file that fits in one chunk
    (most source files) is one piece, with no search for a place to cut."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    offset, pending, first = 0, "", True
    with open(path, "rb") as f:
        blob = f.read(CHUNK_BYTES)
        while True:
            following = f.read(CHUNK_BYTES) if blob else b""
            final = not following
            held = len(decoder.getstate()[0])  # bytes of a character the last read cut in two
            try:
                text = pending + decoder.decode(blob, final=final)
            except UnicodeDecodeError as exc:
                raise DataError(f"{path} is not UTF-8 (bad byte at offset {offset - held + exc.start}); convert it "
                                "(iconv -t utf-8) or pass --encoding-errors replace") from None
            offset += len(blob)
            on_bytes(len(blob))
            cut = len(text) if final else safe_cut(text, len(text), CUT_SEARCH)  # the rest waits for the next
            if not cut and len(text) > 4 * CHUNK_BYTES:  # search it all; no line break to cut at: cut anyway
                cut = safe_cut(text, len(text)) or len(text) - text.endswith("\r")  # (not inside CR LF)
            piece, pending = (text[:cut], text[cut:]) if cut else ("", text)
            if piece:
                yield piece, first
                first = False
            if final:
                return
            blob = following


def _jsonl_pieces(path: Path, text_field: str, errors: str, on_bytes) -> Iterator[tuple[str, bool]]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            on_bytes(len(line))
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8", errors))
            except (UnicodeDecodeError, ValueError):
                raise DataError(f"{path} line {number} is not JSON in UTF-8; fix or remove that line") from None
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise MissingFieldError(f"{path} line {number} has no text field {text_field!r}")
            if SURROGATE.search(text):
                raise DataError(f"{path} line {number} escapes a lone surrogate (like \\ud800), which is not "
                                "text and has no UTF-8; fix or remove that line")
            yield text, True


def _parquet_pieces(path: Path, text_field: str, on_bytes) -> Iterator[tuple[str, bool]]:
    from tinylm.data.bpe import require_module

    require_module("pyarrow", ".parquet sources")
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
        raise DataError(f"{path} is not a readable parquet file ({exc})") from None
    if text_field not in parquet.schema_arrow.names:
        raise MissingFieldError(f"{path} has no column {text_field!r} (columns: "
                                f"{', '.join(parquet.schema_arrow.names)})")
    size, rows = path.stat().st_size, max(parquet.metadata.num_rows, 1)
    for batch in parquet.iter_batches(batch_size=1024, columns=[text_field]):
        on_bytes(size * batch.num_rows // rows)  # compressed bytes, shared out over the rows
        for text in batch.column(0).to_pylist():
            if text:
                yield text, True


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
