"""tinylm: train character-level language models from scratch, and understand every line.

    from tinylm import BatchLoader, SimpleBigramLanguageModel, TransformerLanguageModel, Evaluator, Trainer

The names match the teaching notebook "How Language Models Work"; ``BigramLanguageModel`` is its
(misleading) name for the transformer and is kept as an alias of ``TransformerLanguageModel``.
"""

from tinylm.config import ModelConfig, RunConfig, TrainConfig, load_config
from tinylm.data import BatchLoader, load_text, split
from tinylm.evaluate import Evaluator
from tinylm.models import BigramLanguageModel, SimpleBigramLanguageModel, TransformerLanguageModel, build_model
from tinylm.tokenizer import CharTokenizer
from tinylm.train import LRSchedule, Trainer

__version__ = "0.1.0"

__all__ = [
    "BatchLoader", "BigramLanguageModel", "CharTokenizer", "Evaluator", "LRSchedule", "ModelConfig",
    "RunConfig", "SimpleBigramLanguageModel", "TrainConfig", "Trainer", "TransformerLanguageModel",
    "build_model", "load_config", "load_text", "split",
]
