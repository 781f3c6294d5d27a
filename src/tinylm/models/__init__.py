"""Language models: ``SimpleBigramLanguageModel`` and the GPT-style ``TransformerLanguageModel``.

``build_model(cfg.model, vocab_size)`` makes either one from a ``ModelConfig``.
"""

from torch import nn

from tinylm.config import ModelConfig
from tinylm.models.bigram import SimpleBigramLanguageModel
from tinylm.models.transformer import BigramLanguageModel, TransformerLanguageModel


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    if cfg.kind == "bigram":
        return SimpleBigramLanguageModel(vocab_size, cfg.block_size)
    return TransformerLanguageModel.from_config(cfg, vocab_size)


__all__ = ["SimpleBigramLanguageModel", "TransformerLanguageModel", "BigramLanguageModel", "build_model"]
