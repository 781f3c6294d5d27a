"""The value rules of a run configuration: ``validate(cfg)`` raises ``ConfigError`` on the first bad value.

Kept apart from ``tinylm.config`` (which parses and layers the keys) so the rules read as tables:
one row per rule, naming every key it covers. This module sits below ``tinylm.config`` in the
import layers, so it reads a config by key name and never imports the config classes.
"""

from __future__ import annotations

from typing import Any

from tinylm.device import is_device_name
from tinylm.errors import ConfigError

MAX_SEED = 2**63 - 1  # torch.manual_seed takes at most 2**64 - 1; the margin leaves room for seed + 1 and seed + rank

# (rule text, test, keys): each key's value must pass the test; the message is "KEY must be TEXT, got VALUE".
RANGES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("a positive integer", lambda v: v > 0,
     ("block_size", "n_embed", "n_heads", "n_layer", "batch_size", "grad_accum_steps", "max_iters",
      "eval_interval", "eval_iters")),
    ("positive", lambda v: v > 0, ("learning_rate", "muon_lr")),
    (">= 0", lambda v: v >= 0,
     ("warmup_iters", "lr_decay_iters", "warmdown_iters", "min_lr", "weight_decay", "grad_clip", "threads",
      "average_last")),
    ("in [0, 1)", lambda v: 0 <= v < 1, ("dropout", "beta1", "beta2", "muon_momentum", "ema_decay")),
    ("in (0, 1)", lambda v: 0 < v < 1, ("val_fraction",)),
    ("in [0, 2**63 - 1]", lambda v: 0 <= v <= MAX_SEED, ("seed",)),
]
# What 0 means for the keys where it switches a feature off, so the message says how to turn it off.
ZERO_MEANS = {"lr_decay_iters": "max_iters", "grad_clip": "off", "threads": "PyTorch's default",
              "average_last": "off", "ema_decay": "off"}

CHOICES = {
    "kind": ("bigram", "transformer"),
    "init": ("gpt2", "pytorch"),
    "lr_schedule": ("constant", "cosine", "linear"),
    "dtype": ("auto", "float32", "bfloat16"),
    "optimizer": ("adamw", "muon"),
    "mlp_activation": ("gelu", "relu2"),
    "compile_scope": ("model", "blocks"),
}
TRACKERS = ("tensorboard", "wandb", "trackio")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _value(cfg, key: str) -> Any:
    return getattr(cfg.model, key) if hasattr(cfg.model, key) else getattr(cfg.train, key)


def validate(cfg) -> None:
    """Check a ``RunConfig``: every range and choice, then the rules that tie several keys together."""
    for text, test, keys in RANGES:
        for key in keys:
            value = _value(cfg, key)
            zero = f" (0 = {ZERO_MEANS[key]})" if key in ZERO_MEANS else ""
            _require(test(value), f"{key} must be {text}{zero}, got {value}")
    for key, choices in CHOICES.items():
        value = _value(cfg, key)
        _require(value in choices, f"{key} must be one of {', '.join(choices)}, got {value!r}")
    m, t = cfg.model, cfg.train
    _require(is_device_name(t.device), f"device must be auto, cpu, cuda, cuda:N or mps, got {t.device!r}")
    _require(m.n_embed % m.n_heads == 0,
             f"n_embed ({m.n_embed}) must be divisible by n_heads ({m.n_heads}); change one of them")
    _require(not m.rope or (m.n_embed // m.n_heads) % 2 == 0,
             f"rope needs an even head size, got n_embed/n_heads = {m.n_embed // m.n_heads}; "
             "change n_embed or n_heads")
    _require(not (t.ema_decay and t.average_last),
             "ema_decay and average_last are both set; each saves its own averaged weights, so set only one")
    _require(t.compile_scope == "model" or m.kind == "transformer",
             "compile_scope=blocks compiles a transformer's blocks; a bigram has none: use compile_scope=model")
    tracker_names(t.track)


def tracker_names(track: str) -> list[str]:
    """``"tensorboard, wandb"`` -> ["tensorboard", "wandb"]; an unknown name is a ConfigError."""
    names = [name.strip() for name in track.split(",") if name.strip()]
    for name in names:
        _require(name in TRACKERS, f"unknown tracker {name!r} in track; use any of {', '.join(TRACKERS)}, "
                                   "comma-separated (e.g. --set track=tensorboard,wandb)")
    return list(dict.fromkeys(names))
