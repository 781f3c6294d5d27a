"""Autoregressive sampling: pick the next token, append it, repeat.

    out = model.generate(torch.zeros((1, 1), dtype=torch.long), max_new_tokens=100, top_k=10)
    tok.decode(out[0].tolist())

``temperature`` divides the logits (0 means greedy argmax); ``top_k`` keeps the k most likely
tokens; ``top_p`` keeps the smallest set whose probabilities add up to at least p.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


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


@torch.no_grad()
def generate(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens``, feeding at most ``block_size`` tokens back in."""
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        context = idx[:, -model.block_size:]  # (B, <=block_size): the model has no positions beyond it
        logits, _ = model(context)  # (B, T, V)
        next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
        idx = torch.cat((idx, next_id), dim=1)  # (B, T+1)
    model.train(was_training)
    return idx
