"""A GPT-style decoder-only transformer, readable top to bottom.

    model = TransformerLanguageModel(vocab_size=65, n_embed=64, block_size=16, n_layer=1, n_heads=4)
    logits, loss = model(x, y)     # x, y: (B, T) -> logits (B, T, V), scalar loss

Token embedding + position embedding -> ``n_layer`` x [LayerNorm -> causal multi-head
self-attention -> residual, LayerNorm -> 4x MLP -> residual] -> LayerNorm -> linear head.
Shapes: B batch, T time (<= block_size), C channels (n_embed), H heads, hs = C // H head size.

Options of ``ModelConfig`` that make small GPTs learn faster, all off by default: ``rope`` (rotary
position embeddings instead of the position table), ``qk_norm``, ``mlp_activation="relu2"``,
``zero_init_proj`` and ``tie_weights``.

``BigramLanguageModel`` is the teaching notebook's name for this class; it is kept as an alias
(with the notebook's PyTorch-default init) so the notebook runs unchanged, but the model is a
transformer, not a bigram model.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from tinylm.config import ModelConfig
from tinylm.generate import generate
from tinylm.models.kv_cache import KVCache, LayerKV, cached_attention
from tinylm.models.rope import Rotary


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale each vector along the last dim to unit root-mean-square (no learned gain)."""
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).type_as(x)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


class CausalSelfAttention(nn.Module):
    """H heads attend in parallel; position t sees positions <= t only."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embed, 3 * cfg.n_embed, bias=cfg.bias)  # queries, keys, values at once
        self.proj = nn.Linear(cfg.n_embed, cfg.n_embed, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.qk_norm = cfg.qk_norm
        self.rotary = Rotary(cfg.n_embed // cfg.n_heads, cfg.block_size) if cfg.rope else None

    def heads(self, x: torch.Tensor, start_pos: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project (B, T, C) into queries, keys and values, each (B, H, T, hs).

        The only place q/k/v are made: qk_norm and rotary embeddings happen here, the rotation at
        absolute positions ``start_pos .. start_pos + T - 1`` (a key/value cache passes its length).
        """
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, T, C) -> (B, H, T, hs)
                   for t in self.qkv(x).split(C, dim=2))
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q, start_pos), self.rotary(k, start_pos)
        return q, k, v

    def forward(self, x: torch.Tensor, cache: LayerKV | None = None) -> torch.Tensor:
        B, T, C = x.shape
        if cache is not None:  # generation: attend over stored keys/values too (see kv_cache.py)
            q, k, v = self.heads(x, start_pos=cache.length)  # (B, H, T, hs)
            y = cached_attention(q, *cache.append(k, v))  # (B, H, T, hs)
            return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))
        q, k, v = self.heads(x)  # (B, H, T, hs)
        # Fused kernel (flash attention on GPUs): softmax(q k^T / sqrt(hs) + causal mask) v.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, H, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.proj(y))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, H, T, T) attention matrix that forward() applies, spelled out for inspection."""
        q, k, _ = self.heads(x)
        T = x.size(1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


class MLP(nn.Module):
    """Per-position feed-forward network, 4x wider in the middle."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embed, 4 * cfg.n_embed, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embed, cfg.n_embed, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.activation = relu_squared if cfg.mlp_activation == "relu2" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.activation(self.fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm residual block: communicate (attention), then compute (MLP)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embed, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embed, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: LayerKV | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)  # (B, T, C)
        return x + self.mlp(self.ln2(x))  # (B, T, C)


class TransformerLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, n_embed: int = 64, block_size: int = 16, n_layer: int = 1,
                 n_heads: int = 4, dropout: float = 0.0, **options):
        super().__init__()
        cfg = ModelConfig(kind="transformer", block_size=block_size, n_embed=n_embed, n_heads=n_heads,
                          n_layer=n_layer, dropout=dropout, **options)
        self.config, self.vocab_size, self.block_size = cfg, vocab_size, block_size
        self.token_embedding = nn.Embedding(vocab_size, n_embed)
        # With rope, positions enter through rotated queries and keys instead of this table.
        self.position_embedding = None if cfg.rope else nn.Embedding(block_size, n_embed)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embed, bias=cfg.bias)
        self.head = nn.Linear(n_embed, vocab_size, bias=False)
        if cfg.init == "gpt2":
            self._init_gpt2()
        if cfg.zero_init_proj:  # each block starts as the identity: the residual stream passes through
            for name, p in self.named_parameters():
                if name.endswith("proj.weight"):
                    nn.init.zeros_(p)
        if cfg.tie_weights:
            self.head.weight = self.token_embedding.weight  # (V, C), one matrix for both

    @classmethod
    def from_config(cls, cfg: ModelConfig, vocab_size: int) -> "TransformerLanguageModel":
        fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "kind"}
        return cls(vocab_size, **fields)

    def _init_gpt2(self) -> None:
        # Small N(0, 0.02) weights make every logit ~0 at step 0, so the loss starts near ln(V).
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # keep the residual stream's variance flat in depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * len(self.blocks)))

    def embed(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """Token (+ position, unless rope) embeddings of idx (B, T) at positions start_pos.. -> (B, T, C)."""
        x = self.token_embedding(idx)  # (B, T, C)
        if self.position_embedding is not None:
            positions = torch.arange(start_pos, start_pos + idx.size(1), device=idx.device)  # (T,)
            x = x + self.position_embedding(positions)
        return self.dropout(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        """idx (B, T) -> logits (B, T, V); with a cache, idx holds the tokens after the cached ones."""
        B, T = idx.shape
        start = 0 if cache is None else cache.length  # position of idx[:, 0]
        if start + T > self.block_size:
            raise ValueError(f"sequence length {start + T} exceeds block_size {self.block_size}")
        x = self.embed(idx, start)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache.layers[i])  # (B, T, C)
        logits = self.head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.reshape(B * T))
        return logits, loss

    def new_kv_cache(self, batch_size: int) -> KVCache:
        """An empty key/value cache for ``batch_size`` sequences of up to block_size positions."""
        cfg, weight = self.config, self.head.weight
        return KVCache(cfg.n_layer, batch_size, cfg.n_heads, self.block_size, cfg.n_embed // cfg.n_heads,
                       weight.device, weight.dtype)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        return generate(self, idx, max_new_tokens, temperature, top_k, top_p, generator)


class BigramLanguageModel(TransformerLanguageModel):
    """The notebook's name for the transformer, kept so the notebook runs unchanged.

    Identical to ``TransformerLanguageModel`` except that it keeps PyTorch's default weight init,
    as the notebook's model did (``init="pytorch"``), so the notebook's numbers come out the same.
    """

    def __init__(self, vocab_size: int, n_embed: int = 64, block_size: int = 16, n_layer: int = 1,
                 n_heads: int = 4, dropout: float = 0.0, **options):
        options.setdefault("init", "pytorch")
        super().__init__(vocab_size, n_embed, block_size, n_layer, n_heads, dropout, **options)
