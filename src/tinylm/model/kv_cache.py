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

A rope cache made with ``slack=S`` rolls lazily: its buffers hold block_size + S positions, a slide
only moves where the window begins, and the kept keys move and rotate back once every ~S slides
instead of at every one. New keys are rotated at their slot in the buffers; attention depends on
relative positions only, so the outputs agree with the eagerly rolled cache up to float rounding.
Rolling a full 256-position cache every step was half of the compressor's time (cpu-10min model).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tinylm.model.rope import Rotary, apply_rotary


class LayerKV:
    """One layer's keys and values, (B, H, max_len, hs) each, filled up to ``length``.

    ``weights_t`` (shared by all layers of one cache) maps a Linear layer to its weight stored
    transposed, (in, out) and contiguous: see ``transposed_weights``.
    """

    def __init__(self, batch_size: int, n_heads: int, max_len: int, head_size: int,
                 device: torch.device, dtype: torch.dtype, weights_t: dict | None = None,
                 rotary: Rotary | None = None):
        shape = (batch_size, n_heads, max_len, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.offset = 0  # slots before the window: dropped positions a lazy cache has not moved out yet
        self.length = 0  # positions in the window: slots offset .. offset + length - 1
        self.weights_t = weights_t or {}
        self.rotary = rotary  # a lazy cache's table, reaching every slot; None: the attention's own

    def rotate(self, x: torch.Tensor, rotary: Rotary) -> torch.Tensor:
        """Queries/keys x (..., T, hs) rotated for the T slots after the window (``rotary``: the model's table)."""
        return (self.rotary if self.rotary is not None else rotary)(x, self.offset + self.length)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, hs) after the window; return the window's keys/values (B, H, length, hs)."""
        start, end = self.offset + self.length, self.offset + self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"the cache holds {self.k.size(2)} positions; {end} were asked for")
        self.k.narrow(2, start, end - start).copy_(k)  # in place: no allocation per step
        self.v.narrow(2, start, end - start).copy_(v)
        self.length += k.size(2)
        return self.k.narrow(2, self.offset, self.length), self.v.narrow(2, self.offset, self.length)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store the T new keys/values (B, H, T, hs); the T queries (B, H, T, hs) attend over all stored."""
        return cached_attention(q, *self.append(k, v))  # (B, H, T, hs)

    def linear(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """``layer(x)`` for x (B, T, in); with a transposed copy of its weight, as x @ W^T from that copy."""
        w_t = self.weights_t.get(layer)  # (in, out)
        if w_t is None:
            return layer(x)
        if layer.bias is None:
            return x @ w_t  # (B, T, in) @ (in, out) -> (B, T, out)
        return torch.addmm(layer.bias, x.reshape(-1, x.size(-1)), w_t).view(*x.shape[:-1], -1)

    def drop_oldest(self, n: int, rotary: Rotary | None = None) -> None:
        """Forget the n oldest positions; with rotary embeddings, rotate the kept keys n positions back."""
        kept = self.length - n
        keys = self.k[:, :, n:self.length]  # (B, H, kept, hs)
        if rotary is not None:
            cos, sin = rotary.cos[n:n + 1], rotary.sin[n:n + 1]  # (1, hs): the angle of n positions
            keys = apply_rotary(keys, cos, -sin)  # rotation by -n positions: sin(-a) = -sin(a)
        self.k[:, :, :kept] = keys  # a new tensor: apply_rotary never returns a view of k
        self.v[:, :, :kept] = self.v[:, :, n:self.length].clone()
        self.length = kept

    def move_to_front(self, rotary: Rotary) -> None:
        """A lazy cache: move the window to slot 0, its keys rotated back ``offset`` positions in one pass."""
        dropped, self.offset = self.offset, 0
        self.length += dropped
        self.drop_oldest(dropped, rotary)


def transposed_weights(model: nn.Module) -> dict[nn.Linear, torch.Tensor]:
    """Each Linear layer of ``model`` -> its weight as an (in, out) contiguous copy, for CPU decoding.

    One decode step multiplies a single row per sequence by every weight matrix. On the CPU,
    MKL's fp32 product of one row with an (in, out) matrix took 1.4 ms for a nanogpt-char-sized
    model's 25 matrices where ``F.linear`` on the (out, in) weight took 2.2 ms (one thread;
    benchmarks/RESULTS.md). The copies hold the weights at the time the cache is made: a cache
    lives for one generation, while the weights do not change.
    """
    return {m: m.weight.detach().t().contiguous() for m in model.modules() if isinstance(m, nn.Linear)}


class KVCache:
    """Per-layer caches plus ``start``: where the cached window begins in the whole sequence."""

    def __init__(self, n_layer: int, batch_size: int, n_heads: int, max_len: int, head_size: int,
                 device: torch.device, dtype: torch.dtype = torch.float32, rotary: Rotary | None = None,
                 weights_t: dict | None = None, slack: int = 0):
        self.slack = slack if rotary is not None else 0  # > 0: roll lazily (see the module docstring)
        if self.slack:
            rotary = rotary.extended(max_len + self.slack)
        self.layers = [LayerKV(batch_size, n_heads, max_len + self.slack, head_size, device, dtype, weights_t,
                               rotary if self.slack else None) for _ in range(n_layer)]
        self.max_len = max_len
        self.rotary = rotary  # set for rope models: the window can roll instead of being refilled
        self.start = 0
        # Optional: drops the oldest position of a full cache in one pass, the same arithmetic as
        # drop_oldest(1) (static_decode.CompiledDecoder sets it: past block_size that is every step).
        self.roll_full_by_one = None

    @property
    def length(self) -> int:
        return self.layers[0].length

    def reset(self, start: int = 0) -> None:
        for layer in self.layers:
            layer.offset = layer.length = 0
        self.start = start

    def slide_to(self, start: int) -> None:
        """Make the cached window begin at token ``start``: roll (rope) or empty it (learned positions)."""
        shift = start - self.start
        if shift == 0:
            return
        if self.rotary is None or not 0 < shift < self.length:
            self.reset(start)
            return
        if self.slack:
            self._slide_lazily(shift)
        elif shift == 1 and self.length == self.max_len and self.roll_full_by_one is not None:
            self.roll_full_by_one()
        else:
            for layer in self.layers:
                layer.drop_oldest(shift, self.rotary)
        self.start = start

    def _slide_lazily(self, shift: int) -> None:
        """Forget ``shift`` positions by moving the window's start; move the keys only when a full
        window would no longer fit after it (every ~slack positions)."""
        for layer in self.layers:
            layer.offset += shift
            layer.length -= shift
        if self.layers[0].offset > self.slack:  # offset + max_len would pass the max_len + slack slots
            for layer in self.layers:
                layer.move_to_front(self.rotary)


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
