"""Autoregressive sampling: pick the next token, append it, repeat.

    out = model.generate(torch.zeros((1, 1), dtype=torch.long), max_new_tokens=100, top_k=10)
    tok.decode(out[0].tolist())

``temperature`` divides the logits (0 means greedy argmax); ``top_k`` keeps the k most likely
tokens; ``top_p`` keeps the smallest set whose probabilities add up to at least p.

Models with ``new_kv_cache`` (the transformer) generate through a key/value cache by default
(``use_cache=True``): the same tokens as the notebook's loop, much faster (see ``CachedContext``).
``stream(...)`` yields each new token as it is sampled, for printing characters as they come.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.nn import functional as F

from tinylm.models.rope import apply_rotary


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set the logits of tokens outside the top-k / top-p set to -inf. ``logits`` is (B, V)."""
    if top_k is not None and top_k < logits.size(-1):
        kth_best = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the best always stays.
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row from the last-position logits (B, V); returns (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


class CachedContext:
    """Last-position logits of a growing sequence, running only the tokens the cache has not seen.

    The model sees the window ``idx[:, -block_size:]``, as in the notebook. While the sequence fits
    in block_size, each step appends one position to the cache. Once the window slides, a learned
    position table gives every kept token a new position, so the cache is refilled from the window
    (one full forward, exact, as costly as the uncached step). With rotary embeddings (``rope``) the
    cache rolls instead: the oldest position is dropped and kept keys are rotated one position back,
    which keeps steps cheap; deeper layers then still carry information from dropped tokens, so past
    block_size a rope model's output may differ slightly from the uncached loop.
    """

    def __init__(self, model: torch.nn.Module, batch_size: int):
        self.model = model
        self.cache = model.new_kv_cache(batch_size)
        self.rotaries = [block.attn.rotary for block in model.blocks] if model.config.rope else None

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) for the token after ``idx`` (B, N), which extends the previous call's idx."""
        cache, start = self.cache, max(0, idx.size(1) - self.model.block_size)  # window: idx[:, start:]
        if start != cache.start:
            shift = start - cache.start
            if self.rotaries is None or not 0 < shift < cache.length:
                cache.reset(start)
            else:
                self._roll(shift)
        fresh = idx[:, cache.start + cache.length:]  # (B, T_new): tokens not yet in the cache
        logits, _ = self.model(fresh, cache=cache)
        return logits[:, -1, :]

    def _roll(self, shift: int) -> None:
        for layer, rotary in zip(self.cache.layers, self.rotaries):
            cos, sin = rotary.cos[shift:shift + 1], rotary.sin[shift:shift + 1]  # (1, hs/2)
            layer.drop_oldest(shift, unrotate=lambda k, n: apply_rotary(k, cos, -sin))  # rotate by -shift
        self.cache.start += shift


def supports_cache(model: torch.nn.Module) -> bool:
    return hasattr(model, "new_kv_cache")


@torch.no_grad()
def stream(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
           use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Yield each new token (B, 1) of the continuation of ``idx`` (B, T) as soon as it is sampled."""
    was_training = model.training
    model.eval()
    context = CachedContext(model, idx.size(0)) if use_cache and supports_cache(model) else None
    try:
        for _ in range(max_new_tokens):
            if context is not None:
                logits = context.logits(idx)  # (B, V)
            else:  # the notebook's loop: rerun the last block_size tokens (the model has no positions beyond)
                logits = model(idx[:, -model.block_size:])[0][:, -1, :]  # (B, V)
            next_id = sample_next(logits, temperature, top_k, top_p, generator)  # (B, 1)
            idx = torch.cat((idx, next_id), dim=1)  # (B, T+1)
            yield next_id
    finally:
        model.train(was_training)


def generate(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens``, feeding at most ``block_size`` tokens back in."""
    new = list(stream(model, idx, max_new_tokens, temperature, top_k, top_p, generator, use_cache))
    return torch.cat([idx, *new], dim=1)  # (B, T + max_new_tokens)
