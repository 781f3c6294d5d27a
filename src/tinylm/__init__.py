"""tinylm: train character-level language models from scratch, and understand every line.

    from tinylm import BatchLoader, SimpleBigramLanguageModel, TransformerLanguageModel, Evaluator, Trainer

The names match the teaching notebook "How Language Models Work" (see ``tinylm.compat``);
``BigramLanguageModel`` is its (misleading) name for the transformer. The library's own names are
``GPT`` and ``BigramModel`` (``tinylm.model``), ``generate`` (``tinylm.sampling``) and
``estimate_loss`` / ``exact_loss`` (``tinylm.evaluate``).
"""

from tinylm.compat import BigramLanguageModel, SimpleBigramLanguageModel, TransformerLanguageModel
from tinylm.config import ModelConfig, RunConfig, TrainConfig, load_config
from tinylm.data import BatchLoader, CharTokenizer, load_text, split
from tinylm.evaluate import Evaluator, estimate_loss, exact_loss
from tinylm.model import GPT, BigramModel, build_model
from tinylm.optim import LRSchedule
from tinylm.sampling import SamplingOptions, generate
from tinylm.training.trainer import Callback, Trainer

__version__ = "0.2.0"

__all__ = [
    "GPT", "BatchLoader", "BigramLanguageModel", "BigramModel", "Callback", "CharTokenizer", "Evaluator",
    "LRSchedule", "ModelConfig", "RunConfig", "SamplingOptions", "SimpleBigramLanguageModel", "TrainConfig",
    "Trainer", "TransformerLanguageModel", "build_model", "estimate_loss", "exact_loss", "generate",
    "load_config", "load_text", "split",
]
