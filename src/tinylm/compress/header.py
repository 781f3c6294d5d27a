"""The ``.tlm`` container: a fixed-size header, then the range coder's 32-bit words (or the raw bytes).

    header = Header(model_id=model_fingerprint(model, tok), ...)
    blob = header.pack() + payload
    header, payload = Header.unpack(blob)       # raises CompressError on anything malformed

Layout (little-endian, 72 bytes): magic ``TLMZ``, format version, mode (0 model-coded, 1 stored),
tokenizer kind (0 char), reserved byte, the model id (first 16 bytes of the sha256 of the model
config, tokenizer and weights), the original length in bytes and in symbols (characters), the
segment length, the ``--adapt`` settings (steps, interval, learning rate), the first 16 bytes of
the sha256 of the original, and a CRC-32 of all the header bytes before it.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass

import torch

from tinylm.errors import TinyLMError

MAGIC = b"TLMZ"
# Format 2 codes rope models with a lazily rolled key/value cache (tinylm.model.kv_cache), which
# gives other floats, so other bits, than format 1's roll at every character. Both are read.
VERSION = 2
READABLE_VERSIONS = (1, 2)
MODE_CODED, MODE_STORED = 0, 1
TOKENIZER_CHAR = 0
_LAYOUT = struct.Struct("<4sBBBB16sQQIHHf16s")
_CRC = struct.Struct("<I")
HEADER_SIZE = _LAYOUT.size + _CRC.size


class CompressError(TinyLMError):
    """A .tlm file that is damaged, of another format version, or made with another model."""


def digest(data: bytes) -> bytes:
    """The checksum of the original stored in the header: the first 16 bytes of its sha256."""
    return hashlib.sha256(data).digest()[:16]


def model_fingerprint(model: torch.nn.Module, tokenizer) -> bytes:
    """First 16 bytes of sha256 over the model config, the tokenizer and every weight (name, dtype, shape, bytes).

    An ensemble's config is the list of its members' configs, in order."""
    h = hashlib.sha256()
    members = getattr(model, "members", None)
    if members is not None:
        config = [getattr(getattr(m, "config", None), "__dict__", {}) for m in members]
    else:
        config = getattr(getattr(model, "config", None), "__dict__", {})
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()[:16]


def adapt_settings_ok(steps: int, every: int, lr: float) -> bool:
    """Whether the decoder can replay these --adapt settings: off (0 steps), or an update every
    ``every`` >= 1 characters at a finite positive rate (every 0 divides by zero, nan poisons the weights)."""
    return steps == 0 or (every >= 1 and math.isfinite(lr) and lr > 0)


@dataclass
class Header:
    model_id: bytes
    n_bytes: int  # length of the original file
    n_symbols: int  # characters coded (UTF-8 characters, plus one per byte that is not UTF-8)
    segment: int  # characters per row: row r codes characters [r * segment, (r + 1) * segment)
    checksum: bytes  # digest(original)
    mode: int = MODE_CODED
    adapt_steps: int = 0  # SGD steps per adaptation; 0 means no --adapt
    adapt_every: int = 0  # coded characters per row between adaptations
    adapt_lr: float = 0.0
    version: int = VERSION

    def pack(self) -> bytes:
        body = _LAYOUT.pack(MAGIC, self.version, self.mode, TOKENIZER_CHAR, 0, self.model_id, self.n_bytes,
                            self.n_symbols, self.segment, self.adapt_steps, self.adapt_every, self.adapt_lr,
                            self.checksum)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def unpack(cls, blob: bytes) -> tuple[Header, bytes]:
        """(header, payload) of a .tlm file; CompressError names what is wrong with a bad one."""
        if len(blob) < 4 or blob[:4] != MAGIC:
            raise CompressError("not a tinylm compressed file (bad magic); give a file made by `tinylm compress`")
        if len(blob) < HEADER_SIZE:
            raise CompressError("the file is truncated (shorter than its header)")
        body, (crc,) = blob[:_LAYOUT.size], _CRC.unpack_from(blob, _LAYOUT.size)
        (_, version, mode, kind, _, model_id, n_bytes, n_symbols, segment, adapt_steps, adapt_every, adapt_lr,
         checksum) = _LAYOUT.unpack(body)
        if version not in READABLE_VERSIONS:
            readable = " and ".join(map(str, READABLE_VERSIONS))
            raise CompressError(f"format version {version} is not supported (this tinylm reads {readable}); "
                                "decompress it with the tinylm that wrote it")
        if zlib.crc32(body) != crc:
            raise CompressError("the file is damaged (header checksum mismatch)")
        if mode not in (MODE_CODED, MODE_STORED) or kind != TOKENIZER_CHAR or n_symbols > n_bytes:
            raise CompressError("the file is damaged (impossible header values)")
        if not adapt_settings_ok(adapt_steps, adapt_every, adapt_lr):  # the CRC is no defence against a forger
            raise CompressError("the file is damaged or forged (impossible --adapt settings in its header)")
        header = cls(model_id, n_bytes, n_symbols, segment, checksum, mode, adapt_steps, adapt_every, adapt_lr,
                     version)
        return header, blob[HEADER_SIZE:]
