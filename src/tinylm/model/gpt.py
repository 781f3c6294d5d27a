"""A GPT-style decoder-only transformer, readable top to bottom.

    model = GPT(ModelConfig(n_embed=64, block_size=16, n_layer=1, n_heads=4), vocab_size=65)
    logits, loss = model(x, y)     # x, y: (B, T) -> logits (B, T, V), scalar loss

Token embedding + position embedding -> ``n_layer`` x [LayerNorm -> causal multi-head
self-attention -> residual, LayerNorm -> 4x MLP -> residual] -> LayerNorm -> linear head.
Shapes: B batch, T time (<= block_size), C channels (n_embed), H heads, hs = C // H head size.

Options of ``ModelConfig`` that make small GPTs learn faster, all off by default: ``rope`` (rotary
position embeddings instead of the position table), ``qk_norm``, ``mlp_activation="relu2"``,
``zero_init_proj`` and ``tie_weights``.

The notebook's names for this class (``TransformerLanguageModel``, ``BigramLanguageModel``) live in
``tinylm.compat``; they add the notebook's constructor and ``generate`` method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from tinylm.config import ModelConfig
from tinylm.model.kv_cache import KVCache, LayerKV, transposed_weights
from tinylm.model.rope import Rotary


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
        # The explicit formula (causal_attention_weights) and PyTorch's fused kernel compute the same
        # thing; tests check they agree. The kernel is faster and saves memory, so it is the default.
        self.use_sdpa = True

    def heads(self, x: torch.Tensor, start_pos: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project (B, T, C) into queries, keys and values, each (B, H, T, hs), rotated (with rope) for
        absolute positions ``start_pos .. start_pos + T - 1``."""
        return self.split_heads(self.qkv(x), lambda qk: self.rotary(qk, start_pos))

    def split_heads(self, qkv: torch.Tensor, rotate: Callable[[torch.Tensor], torch.Tensor],
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The projections qkv (B, T, 3C) as queries, keys and values, each (B, H, T, hs).

        The only place q/k/v are made. Queries and keys are normalised (qk_norm) and rotated (rope, by
        ``rotate``) together, as one (B, H, 2, T, hs) view: half the operations (kernel launches on a
        GPU, in training and in backward too) of treating each alone, and the same numbers.
        """
        B, T, C3 = qkv.shape
        # Split before transposing: backward then concatenates straight into qkv's (B, T, 3, H, hs) layout.
        qk, v = qkv.view(B, T, 3, self.n_heads, C3 // (3 * self.n_heads)).split((2, 1), dim=2)
        qk, v = qk.transpose(1, 3), v.transpose(1, 3)  # (B, H, 2, T, hs) queries and keys, (B, H, 1, T, hs) values
        if self.qk_norm:
            qk = rms_norm(qk)
        if self.rotary is not None:
            qk = rotate(qk)
        q, k = qk.unbind(2)  # (B, H, T, hs) each; in backward one stack, not two zero-filled scatters
        return q, k, v.squeeze(2)

    def forward_cached(self, x: torch.Tensor, cache: LayerKV) -> torch.Tensor:
        """Generation: the T new positions (B, T, C) attend over the stored keys/values too (kv_cache.py)."""
        B, T, C = x.shape
        q, k, v = self.split_heads(cache.linear(self.qkv, x), lambda qk: cache.rotate(qk, self.rotary))
        y = cache.attend(q, k, v)  # (B, H, T, hs)
        return cache.linear(self.proj, y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x: torch.Tensor, cache: LayerKV | None = None) -> torch.Tensor:
        B, T, C = x.shape
        if cache is not None:
            return self.forward_cached(x, cache)
        q, k, v = self.heads(x)  # (B, H, T, hs)
        dropout = self.dropout if self.training else 0.0
        if self.use_sdpa:  # the same formula in one fused kernel (flash attention on GPUs)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)  # (B, H, T, hs)
        else:
            weights = causal_attention_weights(q, k)  # (B, H, T, T)
            y = F.dropout(weights, dropout, self.training) @ v  # (B, H, T, T) @ (B, H, T, hs) -> (B, H, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.proj(y))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, H, T, T) attention matrix that forward() applies to the values."""
        q, k, _ = self.heads(x)
        return causal_attention_weights(q, k)


def causal_attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) with the future masked out: q, k (B, H, T, hs) -> (B, H, T, T).

    Row t says how much position t takes from each position <= t; each row sums to 1.
    """
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)  # True above the diagonal
    return F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


class MLP(nn.Module):
    """Per-position feed-forward network, 4x wider in the middle."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embed, 4 * cfg.n_embed, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embed, cfg.n_embed, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.activation = relu_squared if cfg.mlp_activation == "relu2" else F.gelu

    def forward(self, x: torch.Tensor, cache: LayerKV | None = None) -> torch.Tensor:
        if cache is not None:  # generation (eval mode: no dropout); the cache may hold faster weights
            return cache.linear(self.proj, self.activation(cache.linear(self.fc, x)))
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
        return x + self.mlp(self.ln2(x), cache)  # (B, T, C)


class GPT(nn.Module):
    """Token (+ position) embeddings -> n_layer Blocks -> LayerNorm -> linear head over the vocabulary."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.config, self.vocab_size, self.block_size = cfg, vocab_size, cfg.block_size
        self.token_embedding = nn.Embedding(vocab_size, cfg.n_embed)
        # With rope, positions enter through rotated queries and keys instead of this table.
        self.position_embedding = None if cfg.rope else nn.Embedding(cfg.block_size, cfg.n_embed)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embed, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embed, vocab_size, bias=False)
        if cfg.init == "gpt2":
            self._init_gpt2()
        if cfg.zero_init_proj:  # each block starts as the identity: the residual stream passes through
            for name, p in self.named_parameters():
                if name.endswith("proj.weight"):
                    nn.init.zeros_(p)
        if cfg.tie_weights:
            self.head.weight = self.token_embedding.weight  # (V, C), one matrix for both

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

    def embed(self, idx: torch.Tensor, start_pos: int | torch.Tensor = 0) -> torch.Tensor:
        """Token (+ position, unless rope) embeddings of idx (B, T) at positions start_pos.. -> (B, T, C).

        ``start_pos`` may be a 0-dim tensor (a compiled decode step: one graph for every position).
        """
        x = self.token_embedding(idx)  # (B, T, C)
        if self.position_embedding is not None:
            positions = start_pos + torch.arange(idx.size(1), device=idx.device)  # (T,)
            x = x + self.position_embedding(positions)
        return self.dropout(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                blocks: Sequence[nn.Module] | None = None):
        """idx (B, T) -> logits (B, T, V); with a cache, idx holds the tokens after the cached ones.

        ``blocks`` runs other modules in place of ``self.blocks`` (without a cache): the same blocks
        compiled, for training (tinylm/training/compiled.py)."""
        B, T = idx.shape
        start = 0 if cache is None else cache.length  # position of idx[:, 0]
        if start + T > self.block_size:
            raise ValueError(f"sequence length {start + T} exceeds block_size {self.block_size}")
        if cache is None:
            x = self.embed(idx)  # (B, T, C)
            for block in blocks or self.blocks:
                x = block(x)  # (B, T, C)
            logits = self.head(self.ln_f(x))  # (B, T, V)
        else:
            logits = self.decode(idx, cache.layers)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.reshape(B * T))
        return logits, loss

    def decode(self, idx: torch.Tensor, layers: list) -> torch.Tensor:
        """Logits (B, T, V) of idx (B, T), the tokens after those cached in ``layers`` (one per block).

        ``layers`` are ``LayerKV`` caches, or the fixed-shape views of a compiled step (static_decode.py).
        """
        x = self.embed(idx, layers[0].length)  # (B, T, C)
        for block, layer_cache in zip(self.blocks, layers):
            x = block(x, layer_cache)  # (B, T, C)
        return layers[0].linear(self.head, self.ln_f(x))  # (B, T, V)

    def new_kv_cache(self, batch_size: int, weight_copies: bool = True, slack: int = 0) -> KVCache:
        """An empty key/value cache for ``batch_size`` sequences of up to block_size positions.

        On the CPU, eager one-row products run faster against (in, out) copies of the weights
        (kv_cache.py); ``weight_copies=False`` skips making them (compiled steps read the weights as they are).
        ``slack`` > 0: a rope cache rolls lazily, moving its keys once per ~slack slides (kv_cache.py).
        """
        cfg, weight = self.config, self.head.weight
        rotary = self.blocks[0].attn.rotary  # every layer has the same table; None without rope
        weights_t = transposed_weights(self) if weight_copies and weight.device.type == "cpu" else None
        return KVCache(cfg.n_layer, batch_size, cfg.n_heads, self.block_size, cfg.n_embed // cfg.n_heads,
                       weight.device, weight.dtype, rotary=rotary, weights_t=weights_t, slack=slack)
