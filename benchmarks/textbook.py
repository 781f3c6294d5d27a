"""The plain textbook training loop, the baseline that ``benchmarks/speed.py`` times tinylm against.

    model = TextbookGPT(vocab_size=65, n_embed=128, block_size=64, n_layer=4, n_heads=4)
    step = textbook_step(model, optimizer, data, block_size=64, batch_size=12, grad_clip=1.0)

Written the way the lecture code does it: one ``Head`` module per attention head with its own
key/query/value layers, an explicit lower-triangular mask, ``masked_fill`` and ``softmax``; batches
gathered row by row in Python with ``torch.stack``; eager fp32; the default (per-parameter) AdamW.
Same shapes and parameter count as ``TransformerLanguageModel`` (without biases), so the work per
step is the same and only the implementation differs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Head(nn.Module):
    def __init__(self, n_embed: int, head_size: int, block_size: int):
        super().__init__()
        self.key = nn.Linear(n_embed, head_size, bias=False)
        self.query = nn.Linear(n_embed, head_size, bias=False)
        self.value = nn.Linear(n_embed, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        k, q, v = self.key(x), self.query(x), self.value(x)  # (B, T, hs) each
        wei = q @ k.transpose(-2, -1) * k.size(-1) ** -0.5  # (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1)
        return wei @ v  # (B, T, hs)


class MultiHeadAttention(nn.Module):
    def __init__(self, n_embed: int, n_heads: int, block_size: int):
        super().__init__()
        self.heads = nn.ModuleList(Head(n_embed, n_embed // n_heads, block_size) for _ in range(n_heads))
        self.proj = nn.Linear(n_embed, n_embed, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))  # (B, T, C)


class TextbookBlock(nn.Module):
    def __init__(self, n_embed: int, n_heads: int, block_size: int):
        super().__init__()
        self.sa = MultiHeadAttention(n_embed, n_heads, block_size)
        self.ffwd = nn.Sequential(nn.Linear(n_embed, 4 * n_embed, bias=False), nn.GELU(),
                                  nn.Linear(4 * n_embed, n_embed, bias=False))
        self.ln1, self.ln2 = nn.LayerNorm(n_embed), nn.LayerNorm(n_embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sa(self.ln1(x))
        return x + self.ffwd(self.ln2(x))


class TextbookGPT(nn.Module):
    def __init__(self, vocab_size: int, n_embed: int, block_size: int, n_layer: int, n_heads: int):
        super().__init__()
        self.token_embedding_table = nn.Embedding(vocab_size, n_embed)
        self.position_embedding_table = nn.Embedding(block_size, n_embed)
        self.blocks = nn.Sequential(*[TextbookBlock(n_embed, n_heads, block_size) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embed)
        self.lm_head = nn.Linear(n_embed, vocab_size, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        pos = self.position_embedding_table(torch.arange(T, device=idx.device))  # (T, C)
        x = self.blocks(self.token_embedding_table(idx) + pos)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        return F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


def textbook_batch(data: torch.Tensor, block_size: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i:i + block_size] for i in ix])  # (B, T), one Python slice per row
    y = torch.stack([data[i + 1:i + block_size + 1] for i in ix])
    return x, y


def textbook_step(model: TextbookGPT, optimizer: torch.optim.Optimizer, data: torch.Tensor,
                  block_size: int, batch_size: int, grad_clip: float, device: torch.device) -> torch.Tensor:
    x, y = textbook_batch(data, block_size, batch_size)
    x, y = x.to(device), y.to(device)
    loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss
