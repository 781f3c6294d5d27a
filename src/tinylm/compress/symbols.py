"""Bytes <-> the symbols the model codes, and the model's probabilities -> integer frequencies.

    chars, ids = to_symbols(data, tokenizer)    # ids[i] is a token id, or ESCAPE(V) for an unseen char
    counts = quantize(probs)                    # (B, V) float probabilities -> (B, V + 1) int64, fixed total
    bits = min_coded_bits(counts, torch.tensor(ids[:B]))   # a lower bound on the coder's bits for B symbols

Any byte string is coded: it is read as UTF-8 with ``surrogateescape``, so each byte that is not
valid UTF-8 becomes one lone surrogate U+DC80..U+DCFF (PEP 383), which no tokenizer knows. A
character the model never saw is the escape symbol (the last one, V) followed by its UTF-8 bytes
(``surrogatepass`` for those lone surrogates, 3 bytes each), each coded with a uniform model over
256. So a UTF-8 file with a few unseen characters costs a few bytes more, and a binary file is
coded too, just badly; ``compress`` then stores it raw instead (mode "stored" in the header).
"""

from __future__ import annotations

import torch

TOTAL_BITS = 22  # the frequencies of one distribution add up to 2**22 (the range coder works in 24 bits)
TOTAL = 1 << TOTAL_BITS
ESCAPE_COUNT = 16  # the escape symbol's frequency: 2**-18 of the mass, ~5e-6 bits per ordinary char


def to_chars(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def from_chars(text: str) -> bytes:
    """Inverse of ``to_chars``; raises UnicodeEncodeError for a surrogate it did not make."""
    return text.encode("utf-8", errors="surrogateescape")


def char_bytes(ch: str) -> bytes:
    """The bytes that follow an escape: UTF-8, with a lone surrogate written as its 3-byte form."""
    return ch.encode("utf-8", errors="surrogatepass")


def utf8_length(lead: int) -> int:
    """How many bytes a UTF-8 sequence starting with ``lead`` has; 0 if ``lead`` cannot start one."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead < 0xE0:
        return 2
    if 0xE0 <= lead < 0xF0:
        return 3
    if 0xF0 <= lead < 0xF5:
        return 4
    return 0


def to_symbols(data: bytes, tokenizer) -> tuple[str, list[int]]:
    """The characters of ``data`` and their symbols: token id, or ``vocab_size`` (escape) if unseen."""
    chars = to_chars(data)
    escape = tokenizer.vocab_size
    return chars, [tokenizer.stoi.get(ch, escape) for ch in chars]


def quantize(probs: torch.Tensor) -> torch.Tensor:
    """Integer frequencies (B, V + 1) summing to TOTAL from probabilities (B, V); the last column is escape.

    Every symbol gets at least one count; the rounding remainder goes to the most likely token.
    Pure integer arithmetic after one float64 multiply, so equal inputs give equal tables.
    """
    B, V = probs.shape
    budget = TOTAL - ESCAPE_COUNT - V  # what is left after one count per token and the escape's share
    counts = torch.floor(probs.double() * budget).long() + 1  # (B, V)
    counts = torch.cat([counts, torch.full((B, 1), ESCAPE_COUNT, dtype=torch.long)], dim=1)  # (B, V + 1)
    short = TOTAL - counts.sum(dim=1)  # (B,) >= 0 because floor never rounds up
    best = probs.argmax(dim=1)  # (B,)
    counts[torch.arange(B), best] += short
    return counts


def min_coded_bits(counts: torch.Tensor, symbols: torch.Tensor) -> float:
    """A lower bound on the bits the range coder spends on ``symbols`` (B,) under the tables ``counts``.

    constriction (``Categorical(perfect=False)``, 24-bit) re-quantizes a table of total 2**22 as
    floor(cumulative * s) + index with s < 4: a symbol of frequency c gets under 4c + 2 of 2**24, and
    (c + 1) / 2**22 leaves room for float rounding. The decoder compares this with what the payload holds.
    """
    chosen = counts.gather(1, symbols.long()[:, None]).double()  # (B, 1)
    return float((TOTAL_BITS - torch.log2(chosen + 1)).sum())


def max_symbol_count(vocab_size: int) -> int:
    """The largest frequency ``quantize`` gives one token: all but one count per other token and the escape's."""
    return TOTAL - ESCAPE_COUNT - (vocab_size - 1)
