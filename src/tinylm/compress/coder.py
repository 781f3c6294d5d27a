"""Compress and decompress bytes with a language model driving ``constriction``'s range coder.

    blob = compress_bytes(data, model, tokenizer, segment=4096, adapt=None)
    data = decompress_bytes(blob, model, tokenizer)   # CompressError for another model or a damaged file

A symbol the model gives probability p costs -log2 p bits, so the payload is the model's loss on the
file (in bits) plus the coder's small overhead. Why constriction: a maintained range coder with a
numpy batch API (one call codes a whole step of rows) and the documented guarantee that a table
with float probabilities is quantised the same way by encoder and decoder.
"""

from __future__ import annotations

import contextlib
import copy
import math
import struct
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from tinylm.compress.header import (
    MODE_STORED,
    READABLE_VERSIONS,
    VERSION,
    CompressError,
    Header,
    adapt_settings_ok,
    digest,
    model_fingerprint,
)
from tinylm.compress.lockstep import Adapt, Lockstep, fixed_threads
from tinylm.compress.symbols import (
    TOTAL,
    char_bytes,
    from_chars,
    max_symbol_count,
    min_coded_bits,
    to_symbols,
    utf8_length,
)
from tinylm.model import eval_mode

MAX_ROWS = 256  # more rows than this: longer segments instead (bounded memory per step)
# A range coder with a 64-bit state emits a 32-bit word each time its range shrinks by 2**32, so a
# genuine payload of W words carries at least (information coded - 64) bits: the decoder's bound, with
# 64 bits to spare. Past it the decoder would only read zeros (constriction pads an exhausted payload).
STATE_BITS, SPARE_BITS = 64, 64


def float32(x: float) -> float:
    """``x`` as the header stores it, so encoder and decoder use the very same learning rate."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def layout(n: int, segment: int) -> tuple[int, int]:
    """(rows, characters per row) for n characters in segments of at least ``segment``."""
    length = max(1, min(segment, n), math.ceil(n / MAX_ROWS))
    return max(1, math.ceil(n / length)), length


def _coder_modules():
    from constriction import stream  # optional dependency: the `compress` extra

    return stream, stream.model.Categorical(perfect=False), stream.model.Uniform(256)


def _bar(total: int, progress: bool, desc: str) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress,
                dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def _session(model: torch.nn.Module, header: Header, rows: int, length: int) -> Iterator[Lockstep]:
    """The model's side of one file, on one thread and in eval mode for the whole loop.

    (Switching to eval mode at every step walked the module tree each time: ~10% of the time.)"""
    adapt = Adapt(header.adapt_steps, header.adapt_every, header.adapt_lr)
    if adapt.steps:
        model = copy.deepcopy(model)  # the SGD steps change the weights; leave the caller's model alone
    with fixed_threads(1), eval_mode(model):
        yield Lockstep(model, rows, length, adapt, lazy_roll=header.version >= 2)


def compress_bytes(data: bytes, model: torch.nn.Module, tokenizer, segment: int = 4096,
                   adapt: Adapt | None = None, progress: bool = False, cost: dict | None = None,
                   version: int = VERSION) -> bytes:
    """The .tlm file of ``data``: header + range-coded symbols (or + ``data`` itself if that is smaller).

    ``version``: 1 writes the format tinylm wrote before 2026-11-26 (rope caches rolled at every
    character: slower), for a reader with that tinylm.

    ``cost``: a dict that gets the ideal code lengths, in bits, of what was coded: ``model_bits`` under
    the model's float probabilities, ``table_bits`` under the integer tables handed to the coder. The
    payload's size minus them is the cost of quantizing and of the range coder.
    """
    if version not in READABLE_VERSIONS:
        raise ValueError(f"format version {version}: this tinylm writes {READABLE_VERSIONS}")
    chars, symbols = to_symbols(data, tokenizer)
    rows, length = layout(len(symbols), segment)
    adapt = adapt or Adapt()
    if not adapt_settings_ok(adapt.steps, adapt.every, float32(adapt.lr)):  # a file no decoder would accept
        raise ValueError(f"{adapt}: steps > 0 needs every >= 1 and a finite lr > 0")
    header = Header(model_fingerprint(model, tokenizer), len(data), len(symbols), length, digest(data),
                    adapt_steps=adapt.steps, adapt_every=adapt.every, adapt_lr=float32(adapt.lr), version=version)
    grid = np.full(rows * length, -1, dtype=np.int64)  # (rows * length,), -1 past the end of the file
    grid[:len(symbols)] = symbols
    grid = grid.reshape(rows, length)  # (R, L): row r is segment r
    escape = tokenizer.vocab_size
    stream, categorical, uniform = _coder_modules()
    encoder = stream.queue.RangeEncoder()
    with _session(model, header, rows, length) as ls, _bar(len(data), progress, "compress") as bar:
        for t in range(length if symbols else 0):
            counts = ls.counts()  # (R, V + 1)
            column = grid[:, t]  # (R,)
            active = int((column >= 0).sum())  # rows still inside their segment: a prefix
            encoder.encode(column[:active].astype(np.int32), categorical, counts[:active].numpy().astype(np.float64))
            if cost is not None:
                _add_cost(cost, ls.probs[:active], counts[:active], column[:active], escape)
            escaped = [chars[r * length + t] for r in np.flatnonzero(column[:active] == escape)]
            _write_escaped(encoder, uniform, escaped, cost)
            ls.advance(torch.from_numpy(np.where((column >= 0) & (column < escape), column, 0)), active)
            bar.update(active * len(data) / len(symbols))
    payload = encoder.get_compressed().astype("<u4").tobytes()
    if len(payload) >= len(data):  # the model does worse than nothing (binary data, a tiny file): store it
        header.mode, payload = MODE_STORED, data
    return header.pack() + payload


def _write_escaped(encoder, uniform, escaped: list[str], cost: dict | None) -> None:
    """Characters the tokenizer does not know, after their escapes: their UTF-8 bytes, 8 bits each."""
    for char in escaped:
        raw = char_bytes(char)
        encoder.encode(np.frombuffer(raw, np.uint8).astype(np.int32), uniform)
        if cost is not None:  # 8 bits a byte, under the model and under the tables alike
            cost["model_bits"] += 8 * len(raw)
            cost["table_bits"] += 8 * len(raw)


def _add_cost(cost: dict, probs: torch.Tensor, counts: torch.Tensor, symbols: np.ndarray, escape: int) -> None:
    """Add -log2 of each symbol's probability (B,) under the model (B, V) and under the table (B, V + 1).

    An escape has no model probability: it costs what the table gives it, under both.
    """
    ids = torch.from_numpy(symbols)[:, None]  # (B, 1)
    table_p = counts.gather(1, ids).squeeze(1).double() / TOTAL  # (B,)
    known = ids.squeeze(1) < escape  # (B,)
    model_p = torch.where(known, probs.gather(1, ids.clamp(max=escape - 1)).squeeze(1).double(), table_p)
    cost["model_bits"] = cost.get("model_bits", 0.0) + float(-torch.log2(model_p).sum())
    cost["table_bits"] = cost.get("table_bits", 0.0) + float(-torch.log2(table_p).sum())


def decompress_bytes(blob: bytes, model: torch.nn.Module, tokenizer, progress: bool = False) -> bytes:
    """The original bytes of a .tlm file; CompressError (never wrong output) if anything does not match."""
    header, payload = Header.unpack(blob)
    if header.mode == MODE_STORED:
        return _verified(header, payload)
    if model_fingerprint(model, tokenizer) != header.model_id:
        raise CompressError("the file was compressed with another model (model id differs); "
                            "decompress it with the --run that compressed it")
    if len(payload) % 4:
        raise CompressError("the file is damaged (payload is not a whole number of 32-bit words)")
    try:
        chars = _decode(np.frombuffer(payload, dtype="<u4").astype(np.uint32), header, model, tokenizer, progress)
        data = from_chars("".join(chars))
    except (AssertionError, ValueError, UnicodeError, RuntimeError):  # garbage decodes to nonsense, or asserts
        raise CompressError("the file is damaged (its payload does not decode)") from None
    return _verified(header, data)


def _decode(words: np.ndarray, header: Header, model, tokenizer, progress: bool) -> list[str]:
    rows, length = layout(header.n_symbols, header.segment)
    if length != header.segment:
        raise CompressError("the file is damaged (segment length does not fit the original length)")
    n, escape = header.n_symbols, tokenizer.vocab_size
    stream, categorical, uniform = _coder_modules()
    decoder = stream.queue.RangeDecoder(words)
    budget = 32 * len(words) + STATE_BITS + SPARE_BITS
    cheapest = min_coded_bits(torch.tensor([[max_symbol_count(escape)]]), torch.zeros(1))
    if n * cheapest > budget:  # even the likeliest symbol at every step would need more words
        raise CompressError(_OVERCLAIM)
    spent, out = 0.0, [[] for _ in range(rows)]
    with _session(model, header, rows, length) as ls, _bar(header.n_bytes, progress, "decompress") as bar:
        for t in range(length if n else 0):
            counts = ls.counts()  # (R, V + 1)
            active = sum(1 for r in range(rows) if r * length + t < n)
            column = np.zeros(rows, dtype=np.int64)
            column[:active] = decoder.decode(categorical, counts[:active].numpy().astype(np.float64))
            spent += min_coded_bits(counts[:active], torch.from_numpy(column[:active]))
            if spent > budget:
                raise CompressError(_OVERCLAIM)
            for r in range(active):
                out[r].append(_read_escaped(decoder, uniform) if column[r] == escape else tokenizer.itos[column[r]])
            ls.advance(torch.from_numpy(np.where(column < escape, column, 0)), active)
            bar.update(active * header.n_bytes / n)
    return [ch for row in out for ch in row]


_OVERCLAIM = ("the file is damaged or forged (its header claims more characters than its payload can hold); "
              "nothing was written")


def _read_escaped(decoder, uniform) -> str:
    """One character written after an escape: its UTF-8 lead byte says how many bytes follow."""
    lead = int(decoder.decode(uniform, 1)[0])
    size = utf8_length(lead)
    if not size:
        raise ValueError(f"byte {lead:#x} cannot start a UTF-8 sequence")
    rest = bytes(decoder.decode(uniform, size - 1).astype(np.uint8)) if size > 1 else b""
    return (bytes([lead]) + rest).decode("utf-8", errors="surrogatepass")


def _verified(header: Header, data: bytes) -> bytes:
    if len(data) != header.n_bytes or digest(data) != header.checksum:
        raise CompressError("the file is damaged (the decoded data does not match the original's checksum); "
                            "nothing was written")
    return data
