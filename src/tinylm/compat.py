"""The teaching notebook's names, kept so its calls run unchanged.

    model = SimpleBigramLanguageModel(vocab_size, block_size)           # the bigram table
    model = BigramLanguageModel(vocab_size, 64, block_size, 1, 4, 0.1)   # the notebook's transformer
    out = model.generate(torch.zeros((1, 1), dtype=torch.long), max_new_tokens=100)

``BigramLanguageModel`` is the notebook's (misleading) name for the transformer: it is ``GPT`` with
the notebook's positional constructor and PyTorch's default init, as the notebook's model had.
``TransformerLanguageModel`` is the same with GPT-2's init. Both, and the bigram model, gain the
notebook's ``generate`` method, which calls ``tinylm.sampling.generate``.
"""

from __future__ import annotations

import torch

from tinylm.config import ModelConfig
from tinylm.model import GPT, BigramModel
from tinylm.sampling import generate


class _Generates:
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k=None,
                 top_p=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``idx`` (B, T) extended by ``max_new_tokens`` sampled tokens: (B, T + max_new_tokens)."""
        return generate(self, idx, max_new_tokens, temperature, top_k, top_p, generator)


class SimpleBigramLanguageModel(_Generates, BigramModel):
    """The notebook's bigram model: ``BigramModel`` with ``generate``."""


class TransformerLanguageModel(_Generates, GPT):
    """``GPT`` built from the notebook's positional arguments (GPT-2 init unless ``init`` says otherwise)."""

    def __init__(self, vocab_size: int, n_embed: int = 64, block_size: int = 16, n_layer: int = 1,
                 n_heads: int = 4, dropout: float = 0.0, **options):
        cfg = ModelConfig(kind="transformer", block_size=block_size, n_embed=n_embed, n_heads=n_heads,
                          n_layer=n_layer, dropout=dropout, **options)
        super().__init__(cfg, vocab_size)


class BigramLanguageModel(TransformerLanguageModel):
    """The notebook's name for the transformer, with PyTorch's default init, as the notebook had."""

    def __init__(self, vocab_size: int, n_embed: int = 64, block_size: int = 16, n_layer: int = 1,
                 n_heads: int = 4, dropout: float = 0.0, **options):
        options.setdefault("init", "pytorch")
        super().__init__(vocab_size, n_embed, block_size, n_layer, n_heads, dropout, **options)
