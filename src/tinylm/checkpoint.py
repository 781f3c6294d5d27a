"""Checkpoints: one file per run directory, written atomically, read with ``weights_only=True``.

    save_checkpoint(run_dir / "ckpt.pt", payload)   # temp file + fsync + rename: never half-written
    model, tokenizer, cfg = load_run("runs/attention-1")

Killing the process at any moment leaves either the previous checkpoint or the new one, whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tinylm.atomic import atomic_write
from tinylm.config import RunConfig
from tinylm.errors import CheckpointError
from tinylm.models import build_model
from tinylm.tokenizer import CharTokenizer

CHECKPOINT_NAME = "ckpt.pt"
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and by DDP


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(payload, f))


def checkpoint_path(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}; train one with `tinylm train --out {run_dir}`")
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} (expected {path}); is this a tinylm run directory?")
    return path


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
    """(model in eval mode, tokenizer, RunConfig, raw checkpoint) from a run directory."""
    ckpt = load_checkpoint(checkpoint_path(run_dir), map_location=device)
    cfg = RunConfig.from_dict(ckpt["config"])
    tokenizer = CharTokenizer.from_dict(ckpt["tokenizer"])
    model = build_model(cfg.model, tokenizer.vocab_size)
    model.load_state_dict(clean_state_dict(ckpt["model"]))
    return model.to(device).eval(), tokenizer, cfg, ckpt
