"""Language models: the ``BigramModel`` table and the ``GPT`` transformer.

    model = build_model(cfg.model, vocab_size)    # either one, from a ModelConfig
    with eval_mode(model):                        # no dropout inside; the old mode comes back after
        logits, _ = model(idx)

Models only compute logits (and a loss); sampling lives in ``tinylm.sampling``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from tinylm.config import ModelConfig
from tinylm.model.bigram import BigramModel
from tinylm.model.gpt import GPT


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    if cfg.kind == "bigram":
        return BigramModel(vocab_size, cfg.block_size)
    return GPT(cfg, vocab_size)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Switch ``model`` to eval mode for the block and restore its previous mode, even on error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


__all__ = ["GPT", "BigramModel", "build_model", "eval_mode"]
