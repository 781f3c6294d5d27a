"""Check a loaded checkpoint before anything is built from it.

    ckpt = torch.load(path, weights_only=True)
    check_checkpoint(ckpt, path)      # raises CheckpointError naming what is wrong
    check_weight_shapes(cfg, vocab_size, {"head.weight": (65, 64), ...}, path)   # e.g. a safetensors header

``weights_only`` keeps a checkpoint from running code, but what it holds can still be anything
made of dicts, lists, numbers, strings and tensors. A config that declares ``n_embed=65536`` would
make ``build_model`` allocate tens of GB before ``load_state_dict`` could complain, so the config's
rough parameter count is compared with the stored tensors first: a model may be built only if it
is at most about twice what the file already holds. Then a model is built (on the CPU, the RNG
state kept) and its parameter names and shapes are compared with the stored ones.

(Building on the ``meta`` device instead would skip the allocation, but ``with torch.device("meta")``
made 2-rank gloo jobs hang at exit in about a third of resumes here, torch 2.13.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from tinylm.config import RunConfig
from tinylm.data import tokenizer_from_dict
from tinylm.errors import CheckpointError, TinyLMError
from tinylm.model import build_model

# Longer contexts than any character model here needs; rope tables and KV caches grow with it.
MAX_BLOCK_SIZE = 1 << 16
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and by DDP


def clean_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Strip the ``_orig_mod.`` / ``module.`` prefixes so compiled and DDP checkpoints load anywhere."""
    cleaned = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        cleaned[key] = value
    return cleaned


def check_checkpoint(ckpt: Any, path: str | Path) -> None:
    """Raise CheckpointError unless ``ckpt`` holds a valid config, tokenizer and matching weights."""
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} {problem}; it was not written by tinylm or was edited, "
                               "retrain or restore it from a copy")

    if not isinstance(ckpt, dict):
        raise fail(f"holds a {type(ckpt).__name__}, not a dict of config, tokenizer and model")
    missing = [key for key in ("config", "tokenizer", "model") if key not in ckpt]
    if missing:
        raise fail(f"has no {', '.join(missing)}")
    step = ckpt.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise fail(f"has a step that is not a non-negative integer ({type(step).__name__})")
    cfg = _checked_config(ckpt["config"], fail)
    vocab_size = _checked_vocab_size(ckpt["tokenizer"], fail)
    state = _checked_state(ckpt["model"], fail)
    _check_shapes(cfg, vocab_size, {k: tuple(v.shape) for k, v in state.items()}, fail)


def check_tokenizer(data: Any, path: str | Path, fix: str = "retrain or restore it from a copy") -> int:
    """The vocab size of a saved tokenizer (a checkpoint's, or an export's tokenizer.json), or CheckpointError."""
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{path} {problem}; it was not written by tinylm or was edited, {fix}")

    return _checked_vocab_size(data, fail)


def check_training_state(ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise CheckpointError unless the checkpoint's resume state has the types ``Trainer.load_state_dict`` reads.

    Run after ``check_checkpoint``; a well-typed but inconsistent state still fails in the loading
    itself, which ``resume_from`` turns into one line.
    """
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} cannot be resumed: {problem}; start a new run")

    expected = {"optimizer": dict, "last_eval_step": int, "rng": dict, "metrics": list, "train_losses": list}
    for key, kind in expected.items():
        if not isinstance(ckpt.get(key), kind) or isinstance(ckpt.get(key), bool):
            raise fail(f"its {key} is {type(ckpt.get(key)).__name__}, not {kind.__name__}")
    rng = ckpt["rng"]
    if not all(isinstance(rng.get(key), torch.Tensor) for key in ("torch", "loader")):
        raise fail("its rng state has no torch and loader generator tensors")
    if "train_weights" in ckpt:
        _checked_state(ckpt["train_weights"], fail)


def check_weight_shapes(cfg: RunConfig, vocab_size: int, shapes: dict[str, tuple[int, ...]], path: str | Path) -> None:
    """Raise CheckpointError unless ``shapes`` (name -> stored shape) are exactly what ``cfg`` builds."""
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{path} {problem}; it was not written by tinylm or was edited, "
                               "retrain or restore it from a copy")

    if cfg.model.block_size > MAX_BLOCK_SIZE:
        raise fail(f"declares block_size {cfg.model.block_size}, above the limit of {MAX_BLOCK_SIZE}")
    _check_shapes(cfg, vocab_size, clean_state_dict(shapes), fail)


def _checked_config(data: Any, fail) -> RunConfig:
    if not isinstance(data, dict):
        raise fail(f"has a config of type {type(data).__name__}, not a dict")
    try:
        cfg = RunConfig.from_dict(data)
    except TinyLMError as exc:
        raise fail(f"has an invalid config ({exc})") from None
    if cfg.model.block_size > MAX_BLOCK_SIZE:
        raise fail(f"declares block_size {cfg.model.block_size}, above the limit of {MAX_BLOCK_SIZE}")
    return cfg


def _checked_vocab_size(data: Any, fail) -> int:
    if isinstance(data, dict) and (data.get("type") == "byte" or "model" in data):  # byte and BPE tokenizers
        try:
            return tokenizer_from_dict(data).vocab_size
        except Exception as exc:  # a hostile dict can make the tokenizer library raise anything
            raise fail(f"has a tokenizer tinylm cannot read ({type(exc).__name__})") from None
    chars = data.get("chars") if isinstance(data, dict) else None
    if not isinstance(chars, list) or not chars:
        raise fail("has no tokenizer character list")
    if not all(isinstance(ch, str) and len(ch) == 1 for ch in chars) or len(set(chars)) != len(chars):
        raise fail("has a tokenizer whose entries are not distinct single characters")
    return len(chars)


def _checked_state(state: Any, fail) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not state:
        raise fail("has no model weights (an empty or missing state dict)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise fail("has model weights that are not name -> tensor")
    odd = next((f"{k} is {v.dtype}" for k, v in state.items() if not v.is_floating_point()), None)
    if odd:  # int, bool or complex: load_state_dict would cast them silently (complex with a warning)
        raise fail(f"has model weights that are not floating point ({odd})")
    broken = next((k for k, v in state.items() if not torch.isfinite(v).all()), None)
    if broken:  # sampling from them fails deep in torch; one pass over the tensors says it at load
        raise fail(f"has weights that are NaN or infinite ({broken}), as a training that diverged leaves them")
    return clean_state_dict(state)


def rough_parameter_count(cfg: RunConfig, vocab_size: int) -> int:
    """About how many numbers ``build_model`` allocates (embeddings, head, 12 C^2 + 13 C per layer)."""
    m = cfg.model
    if m.kind == "bigram":
        return vocab_size * vocab_size
    C = m.n_embed
    return 2 * vocab_size * C + m.block_size * C + m.n_layer * (12 * C * C + 13 * C) + 2 * C


def _check_shapes(cfg: RunConfig, vocab_size: int, state: dict[str, tuple[int, ...]], fail) -> None:
    if cfg.model.kind == "transformer" and cfg.model.n_layer > len(state):
        raise fail(f"declares n_layer {cfg.model.n_layer} but holds only {len(state)} tensors")
    stored = sum(math.prod(shape) for shape in state.values())
    declared = rough_parameter_count(cfg, vocab_size)
    if declared > 2 * stored + 1_000_000:  # refuse before allocating: the shapes cannot match anyway
        raise fail(f"declares a model of about {declared:,} parameters but holds {stored:,}; its shape "
                   "does not fit its weights")
    with torch.random.fork_rng(devices=[]):  # building initialises weights: keep the caller's RNG state
        expected = {k: tuple(v.shape) for k, v in build_model(cfg.model, vocab_size).state_dict().items()}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise fail(f"has weights that do not fit its config ({detail})")
    for key, shape in expected.items():
        if tuple(state[key]) != shape:
            vocab = " (does the tokenizer match the weights?)" if vocab_size in shape else ""
            raise fail(f"has {key} of shape {tuple(state[key])} but its config and tokenizer "
                       f"need {shape}{vocab}")
