"""The run directory: the one owner of every file a run writes and reads.

    run = RunDir("runs/a1")
    run.start(cfg, tokenizer)              # refuses a directory that already holds a run
    run.save(state, metrics)               # ckpt.pt, then metrics.jsonl: each atomic
    model, tokenizer, cfg, ckpt = load_run("runs/a1")

Files: ``config.json`` and ``tokenizer.json`` (written once, for people), ``ckpt.pt`` (everything
to continue bit-for-bit; read with ``weights_only=True``, so it cannot run code) and
``metrics.jsonl`` (one evaluation a line). Every write goes through a temp file and a rename:
killing the process at any moment leaves the previous file or the new one, whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tinylm.atomic import atomic_write, atomic_write_text
from tinylm.config import RunConfig
from tinylm.data import CharTokenizer
from tinylm.errors import CheckpointError, TinyLMError
from tinylm.model import build_model

CHECKPOINT_NAME = "ckpt.pt"
SAFETENSORS_NAME = "model.safetensors"  # weights only, as ``tinylm export --format safetensors`` writes them
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.json"
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and by DDP


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_NAME

    def refuse_existing(self) -> None:
        if self.checkpoint.exists():
            raise TinyLMError(f"{self.path} already holds a run; continue it with --resume or choose another --out")

    def start(self, cfg: RunConfig, tokenizer: CharTokenizer) -> None:
        """Create a new run: config.json and tokenizer.json, for people to read."""
        self.refuse_existing()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / CONFIG_NAME, json.dumps(cfg.to_dict(), indent=2))
        tokenizer.save(self.path / TOKENIZER_NAME)

    def save(self, state: dict[str, Any], metrics: list[dict]) -> None:
        """Checkpoint, then the metrics file; both atomic, so an interruption loses nothing whole."""
        save_checkpoint(self.checkpoint, state)
        atomic_write_text(self.metrics, "".join(json.dumps(m) + "\n" for m in metrics))

    def require_checkpoint(self) -> Path:
        if not self.path.is_dir():
            raise CheckpointError(f"run directory not found: {self.path}; "
                                  f"train one with `tinylm train --preset PRESET --out {self.path}`")
        if not self.checkpoint.is_file():
            raise CheckpointError(f"no checkpoint in {self.path} (expected {self.checkpoint}); "
                                  "is this a tinylm run directory?")
        return self.checkpoint

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.require_checkpoint(), map_location)

    def read_metrics(self) -> list[dict]:
        """The evaluations of the run: ``metrics.jsonl`` if present, else the checkpoint's copy."""
        if self.metrics.is_file():
            lines = self.metrics.read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        return list(self.load_checkpoint()["metrics"])


def checkpoint_path(run_dir: str | Path) -> Path:
    return RunDir(run_dir).require_checkpoint()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # truncated zip, garbage bytes, pickle refusing unsafe types
        raise CheckpointError(f"checkpoint {path} is damaged or truncated ({type(exc).__name__}); "
                              "retrain or restore it from a copy") from None


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the ``_orig_mod.`` / ``module.`` prefixes so compiled and DDP checkpoints load anywhere."""
    cleaned = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        cleaned[key] = value
    return cleaned


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under torch.compile and DDP wrappers."""
    while hasattr(model, "_orig_mod") or hasattr(model, "module"):
        model = getattr(model, "_orig_mod", None) or model.module
    return model


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, tokenizer, RunConfig, raw checkpoint) from a run directory.

    A directory with ``model.safetensors`` and no ``ckpt.pt`` (an export) loads too; its "checkpoint"
    then holds the config, tokenizer and step, and no optimizer or metrics.
    """
    path = Path(run_dir)
    if not (path / CHECKPOINT_NAME).exists() and (path / SAFETENSORS_NAME).is_file():
        return load_safetensors_run(path, device)
    ckpt = RunDir(run_dir).load_checkpoint(map_location=device)
    cfg = RunConfig.from_dict(ckpt["config"])
    tokenizer = CharTokenizer.from_dict(ckpt["tokenizer"])
    model = build_model(cfg.model, tokenizer.vocab_size)
    model.load_state_dict(clean_state_dict(ckpt["model"]))
    return model.to(device).eval(), tokenizer, cfg, ckpt


def load_safetensors_run(path: Path, device: str | torch.device = "cpu"):
    """load_run for an exported directory: model.safetensors + config.json + tokenizer.json."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    try:
        cfg = RunConfig.from_dict(json.loads((path / CONFIG_NAME).read_text(encoding="utf-8")))
        tokenizer = CharTokenizer.load(path / TOKENIZER_NAME)
        model = build_model(cfg.model, tokenizer.vocab_size)
        load_model(model, path / SAFETENSORS_NAME, strict=True)
        with safe_open(path / SAFETENSORS_NAME, framework="pt") as f:
            step = int((f.metadata() or {}).get("step", -1))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{path} holds model.safetensors but cannot be loaded ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); export it again") from None
    ckpt = {"config": cfg.to_dict(), "tokenizer": tokenizer.to_dict(), "step": step, "metrics": []}
    return model.to(device).eval(), tokenizer, cfg, ckpt
