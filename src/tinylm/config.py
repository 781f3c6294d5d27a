"""Typed run configuration: model and training settings, presets, file loading.

Keys keep the teaching notebook's names (``n_embed``, ``n_heads``, ...), so the notebook's
cloud config is accepted verbatim::

    from tinylm.config import load_config
    cfg = load_config(preset="attention-1", overrides=["max_iters=100", "dropout=0.0"])
    cfg.model.n_embed, cfg.train.learning_rate

Every key lives in exactly one section (``model`` or ``train``), so a flat mapping such as
``{"n_embed": 64, "max_iters": 100}`` is unambiguous. Unknown keys and wrong types raise
``ConfigError`` with a one-line message that says how to fix them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinylm.config_checks import validate
from tinylm.errors import ConfigError
from tinylm.jsonfile import read_regular_file
from tinylm.presets import PRESETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib


@dataclass
class ModelConfig:
    """Shape of the network. ``kind`` is ``bigram`` or ``transformer``."""

    kind: str = "transformer"
    block_size: int = 16  # context length T
    n_embed: int = 64  # channels C
    n_heads: int = 4
    n_layer: int = 1
    dropout: float = 0.0
    bias: bool = False  # biases in Linear layers and LayerNorms
    init: str = "gpt2"  # "gpt2": N(0, 0.02) weights; "pytorch": each layer's own default, as the lecture code
    # Options that make small GPTs learn faster (all off: the plain GPT is the teaching default).
    rope: bool = False  # rotary position embeddings on q and k instead of the learned position table
    qk_norm: bool = False  # RMS-normalise each head's queries and keys before attention
    mlp_activation: str = "gelu"  # "gelu" or "relu2" (ReLU squared)
    zero_init_proj: bool = False  # output projections of attention and MLP start at zero
    tie_weights: bool = False  # share the token embedding with the output head


@dataclass
class TrainConfig:
    """How to optimise. Defaults are the notebook's; new options default to off."""

    batch_size: int = 32  # sequences per micro-batch on each rank
    grad_accum_steps: int = 1  # micro-batches per optimizer step; global batch = batch_size * this * ranks
    max_iters: int = 4001
    eval_interval: int = 500
    eval_iters: int = 200
    learning_rate: float = 3e-3
    lr_schedule: str = "constant"  # "constant", "cosine" or "linear" (linear = warmdown to min_lr)
    warmup_iters: int = 0
    lr_decay_iters: int = 0  # 0 means max_iters
    warmdown_iters: int = 0  # decay over only the last N steps before lr_decay_iters (0 = all after warmup)
    min_lr: float = 0.0
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 0.0  # 0 disables clipping
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"  # "auto" (bf16 autocast where supported), "float32", "bfloat16"
    compile: bool = False
    compile_scope: str = "model"  # with compile: "model" (one graph), or "blocks" (one block's graph reused per layer)
    cuda_graph: bool = False  # record the training step once and replay it (CUDA only; training/graph_step.py)
    threads: int = 0  # CPU threads for PyTorch's kernels (0 = PyTorch's default); 1 wins on a loaded CPU
    optimizer: str = "adamw"  # "adamw", or "muon": Muon for 2-D hidden matrices, AdamW for the rest
    muon_lr: float = 0.02  # Muon's peak lr; the schedule scales it like learning_rate
    muon_momentum: float = 0.95
    target_val_loss: float = 0.0  # stop early once the val estimate reaches it (0 = off)
    ema_decay: float = 0.0  # evaluate and save an EMA of the weights with this decay (0 = off; e.g. 0.999)
    average_last: int = 0  # save the mean weights of the last K checkpoints (0 = off)
    data: str = ""  # path to a UTF-8 text file; "" means Tiny Shakespeare
    val_fraction: float = 0.1
    track: str = ""  # experiment trackers, comma-separated: tensorboard, wandb, trackio ("" = none)
    keep_crlf: bool = False  # keep Windows line endings (CR LF) of a text file; off: read them as LF
    init_from: str = ""  # a run directory (or export) whose weights this run starts from; "" = from scratch


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        cfg = cls()
        apply_mapping(cfg, data)
        validate(cfg)
        return cfg


SECTIONS = ("model", "train")
MAX_CONFIG_BYTES = 2**20  # a config is a few hundred bytes; /dev/zero or a huge file must not fill memory


def _field_types(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


def known_keys() -> list[str]:
    """Every config key, sorted."""
    cfg = RunConfig()
    return sorted(k for name in SECTIONS for k in _field_types(getattr(cfg, name)))


def _section_name(cfg: RunConfig, key: str) -> str:
    for name in SECTIONS:
        if key in _field_types(getattr(cfg, name)):
            return name
    raise ConfigError(f"unknown config key '{key}'; known keys: {', '.join(known_keys())}")


def _coerce(key: str, value: Any, expected: type) -> Any:
    """Check a JSON/TOML value against the field type; ints are accepted for floats."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**1023:  # float() would raise OverflowError
            raise ConfigError(f"config key '{key}' must be a finite number, got an integer of {len(str(value))} digits")
        return float(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ConfigError(
        f"config key '{key}' must be {expected.__name__}, got {type(value).__name__} {value!r}"
    )


def _parse_string(key: str, text: str, expected: type) -> Any:
    """Parse a ``--set key=value`` string into the field's type."""
    if expected is str:
        return text
    if expected is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"config key '{key}' must be true or false, got {text!r}")
    try:
        return expected(text)
    except ValueError:
        raise ConfigError(f"config key '{key}' must be {expected.__name__}, got {text!r}") from None


def set_value(cfg: RunConfig, key: str, value: Any, from_string: bool = False) -> None:
    prefix = None
    if "." in key:  # "model.n_embed" is the same key as "n_embed"
        prefix, key = key.split(".", 1)
        if prefix not in SECTIONS:
            raise ConfigError(f"unknown config section '{prefix}'; use one of {', '.join(SECTIONS)}")
    name = _section_name(cfg, key)
    if prefix is not None and prefix != name:
        raise ConfigError(f"config key '{key}' belongs in section '{name}', not '{prefix}'; "
                          f"move it to [{name}] or give it at the top level")
    section = getattr(cfg, name)
    expected = _field_types(section)[key]
    value = _parse_string(key, value, expected) if from_string else _coerce(key, value, expected)
    if expected is float and not math.isfinite(value):  # NaN passes every range check below (all comparisons fail)
        raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
    setattr(section, key, value)


def apply_mapping(cfg: RunConfig, data: dict[str, Any]) -> None:
    """Apply a flat (``{"n_embed": 64}``) or sectioned (``{"model": {...}}``) mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a JSON/TOML object of key: value, got {type(data).__name__}")
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{key}' must be a table/object of key: value, got "
                                  f"{type(value).__name__} {repr(value)[:80]}; e.g. {{\"{key}\": {{\"n_layer\": 2}}}}")
            for sub_key, sub_value in value.items():
                set_value(cfg, f"{key}.{sub_key}", sub_value)
        else:
            set_value(cfg, key, value)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> None:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r} (example: --set max_iters=100)")
        key, text = item.split("=", 1)
        set_value(cfg, key.strip(), text.strip(), from_string=True)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    raw = read_regular_file(path, MAX_CONFIG_BYTES + 1) if not path.is_dir() else None  # a FIFO is not waited on
    if raw is None or len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is not a regular file of at most {MAX_CONFIG_BYTES // 2**20} MB; "
                          "give a .toml or .json file")
    try:
        if path.suffix.lower() == ".toml":  # c.TOML too: a case-insensitive file system hides the difference
            return tomllib.loads(raw.decode("utf-8"))
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: brackets nested too deep
        raise ConfigError(f"cannot parse config file {path}: {type(exc).__name__}: {str(exc)[:200]}") from None


def parse_config_json(text: str) -> dict[str, Any]:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"--config-json is not valid JSON ({str(exc)[:200]}); "
                          "quote it: '{\"max_iters\": 100}'") from None


def load_config(
    preset: str | None = None,
    file: str | Path | None = None,
    json_text: str | None = None,
    overrides: list[str] | None = None,
    base: RunConfig | None = None,
) -> RunConfig:
    """Defaults (or a copy of ``base``), then the preset, then the file, then the JSON string, then ``--set``."""
    cfg = copy.deepcopy(base) if base is not None else RunConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
        apply_mapping(cfg, PRESETS[preset])
    if file is not None:
        apply_mapping(cfg, read_config_file(file))
    if json_text is not None:
        apply_mapping(cfg, parse_config_json(json_text))
    apply_overrides(cfg, overrides or [])
    validate(cfg)
    return cfg
