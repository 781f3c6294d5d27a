"""Rotary position embeddings (RoPE): position enters attention by rotating queries and keys.

    rope = Rotary(head_size=16, max_positions=256)
    q = rope(q, start_pos=0)      # q: (B, H, T, hs), rotated for absolute positions 0..T-1

Each pair of channels (i, i + hs/2) of a query or key at position p is rotated by the angle
p * base^(-2i/hs). A rotation keeps vector norms, and the dot product of a query rotated for p and
a key rotated for s depends on p - s only: attention sees relative positions, and no learned
position table is needed. ``start_pos`` lets a key/value cache rotate new tokens at their true
positions ``start_pos .. start_pos + T - 1``.
"""

from __future__ import annotations

import torch
from torch import nn


def rotary_angles(head_size: int, max_positions: int, base: float = 10000.0) -> torch.Tensor:
    """(max_positions, hs/2) angles p * base^(-2i/hs), computed in float64 then stored as float32."""
    freqs = base ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)  # (hs/2,)
    positions = torch.arange(max_positions, dtype=torch.float64)  # (P,)
    return torch.outer(positions, freqs).float()  # (P, hs/2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + hs/2) of x (..., T, hs) by angles given as full-width tables (T, hs).

    ``cos`` is [cos a, cos a] and ``sin`` is [-sin a, sin a] along the channels (``Rotary`` keeps both):
    with x = [x1, x2], x * cos + [x2, x1] * sin = [x1 cos a - x2 sin a, x2 cos a + x1 sin a]. Four
    element-wise operations, each rounded once as in the two-halves formula, so the result is the same
    to the bit, in fewer operations (one decode step rotates 2 x n_layer times).
    """
    xf = x.float()
    swapped = xf.roll(xf.size(-1) // 2, dims=-1)  # (..., T, hs): [x2, x1]
    return (xf * cos + swapped * sin).type_as(x)


class Rotary(nn.Module):
    """Holds the cos/sin tables (non-persistent buffers: not in checkpoints) for one head size."""

    def __init__(self, head_size: int, max_positions: int, base: float = 10000.0):
        super().__init__()
        if head_size % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {head_size}")
        self.base = base
        angles = rotary_angles(head_size, max_positions, base)  # (P, hs/2)
        cos, sin = angles.cos(), angles.sin()
        self.register_buffer("cos", torch.cat((cos, cos), dim=-1), persistent=False)  # (P, hs)
        self.register_buffer("sin", torch.cat((-sin, sin), dim=-1), persistent=False)  # (P, hs)

    def extended(self, max_positions: int) -> Rotary:
        """The same rotation for ``max_positions`` positions, on the same device."""
        return Rotary(self.cos.size(-1), max_positions, self.base).to(self.cos.device)

    def forward(self, x: torch.Tensor, start_pos: int | torch.Tensor = 0) -> torch.Tensor:
        T = x.size(-2)
        if isinstance(start_pos, torch.Tensor):  # a 0-dim position: a compiled decode step (static_decode.py)
            positions = start_pos + torch.arange(T, device=x.device)  # (T,)
            return apply_rotary(x, self.cos[positions], self.sin[positions])
        if start_pos + T > self.cos.size(0):
            raise ValueError(f"positions up to {start_pos + T - 1} exceed the rotary table ({self.cos.size(0)})")
        cos = self.cos[start_pos:start_pos + T]  # (T, hs)
        sin = self.sin[start_pos:start_pos + T]  # (T, hs)
        return apply_rotary(x, cos, sin)
