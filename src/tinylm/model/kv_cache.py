"""A key/value cache: each new token attends to stored keys and values instead of recomputing them.

    cache = model.new_kv_cache(batch_size=1)        # preallocated: block_size positions per layer
    logits, _ = model(prompt_ids, cache=cache)      # prefill: (B, T0) -> keys/values of T0 positions
    logits, _ = model(next_id, cache=cache)         # decode: (B, 1), one new position per step

Without a cache, generating token t re-runs the whole context (up to block_size tokens) through
every layer. With it, a step runs one token through the layers; its query attends to the stored
keys and values of all earlier positions, which never change while the context only grows.

Past ``block_size``: the model sees the last ``block_size`` characters, as in the notebook, and
``KVCache.slide_to(start)`` moves the cached window to begin at token ``start``. With a learned
position table the window's positions all shift by one every step, so every stored key and value
is stale: the cache empties and the caller refills it from the window (one full forward, exact, as
costly as the uncached step). With rotary embeddings keys depend on position only through a
rotation, so the cache rolls instead: the oldest positions are dropped and the kept keys rotated
back, which keeps steps cheap; deeper layers then still carry information from dropped tokens, so
past block_size a rope model's output may differ slightly from the uncached loop.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tinylm.model.rope import Rotary, apply_rotary


class LayerKV:
    """One layer's keys and values, (B, H, max_len, hs) each, filled up to ``length``."""

    def __init__(self, batch_size: int, n_heads: int, max_len: int, head_size: int,
                 device: torch.device, dtype: torch.dtype):
        shape = (batch_size, n_heads, max_len, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, hs) after the filled part; return all keys/values (B, H, length, hs)."""
        end = self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"the cache holds {self.k.size(2)} positions; {end} were asked for")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def drop_oldest(self, n: int, rotary: Rotary | None = None) -> None:
        """Forget the n oldest positions; with rotary embeddings, rotate the kept keys n positions back."""
        kept = self.length - n
        keys = self.k[:, :, n:self.length]  # (B, H, kept, hs)
        if rotary is not None:
            cos, sin = rotary.cos[n:n + 1], rotary.sin[n:n + 1]  # (1, hs/2): the angle of n positions
            keys = apply_rotary(keys, cos, -sin)  # rotation by -n positions
        self.k[:, :, :kept] = keys.clone()
        self.v[:, :, :kept] = self.v[:, :, n:self.length].clone()
        self.length = kept


class KVCache:
    """Per-layer caches plus ``start``: where the cached window begins in the whole sequence."""

    def __init__(self, n_layer: int, batch_size: int, n_heads: int, max_len: int, head_size: int,
                 device: torch.device, dtype: torch.dtype = torch.float32, rotary: Rotary | None = None):
        self.layers = [LayerKV(batch_size, n_heads, max_len, head_size, device, dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.rotary = rotary  # set for rope models: the window can roll instead of being refilled
        self.start = 0

    @property
    def length(self) -> int:
        return self.layers[0].length

    def reset(self, start: int = 0) -> None:
        for layer in self.layers:
            layer.length = 0
        self.start = start

    def slide_to(self, start: int) -> None:
        """Make the cached window begin at token ``start``: roll (rope) or empty it (learned positions)."""
        shift = start - self.start
        if shift == 0:
            return
        if self.rotary is None or not 0 < shift < self.length:
            self.reset(start)
            return
        for layer in self.layers:
            layer.drop_oldest(shift, self.rotary)
        self.start = start


def cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of T new queries (B, H, T, hs) over all L cached keys/values (B, H, L, hs).

    The new queries sit at positions L-T .. L-1, so query i may see keys 0 .. L-T+i.
    """
    T, L = q.size(2), k.size(2)
    if T == 1:  # one new token sees everything stored: no mask needed
        return F.scaled_dot_product_attention(q, k, v)
    if T == L:  # an empty cache was filled: ordinary causal attention
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    allowed = torch.ones(T, L, dtype=torch.bool, device=q.device).tril(diagonal=L - T)  # (T, L)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
