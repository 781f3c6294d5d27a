"""Perplexity is compression: a language model drives a range coder (``tinylm compress``).

    from tinylm.compress import Adapt, compress_bytes, decompress_bytes
    blob = compress_bytes(data, model, tokenizer, adapt=Adapt(steps=1, every=64, lr=0.1))
    assert decompress_bytes(blob, model, tokenizer) == data

``coder`` (the encoder/decoder loops), ``lockstep`` (the model side both run identically: KV cache,
rows side by side, ``--adapt``), ``symbols`` (bytes -> symbols with an escape; fixed-point
frequencies), ``header`` (the .tlm container: magic, version, model id, lengths, checksum).
"""

from tinylm.compress.coder import compress_bytes, decompress_bytes
from tinylm.compress.header import CompressError, Header
from tinylm.compress.lockstep import Adapt

__all__ = ["Adapt", "CompressError", "Header", "compress_bytes", "decompress_bytes"]
