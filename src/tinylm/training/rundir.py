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
from tinylm.data import Tokenizer, tokenizer_from_dict
from tinylm.errors import CheckpointError, TinyLMError
from tinylm.model import build_model

CHECKPOINT_NAME = "ckpt.pt"
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

    def start(self, cfg: RunConfig, tokenizer: Tokenizer) -> None:
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
                                  f"train one with `tinylm train --out {self.path}`")
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
    """(model in eval mode, tokenizer, RunConfig, raw checkpoint) from a run directory."""
    ckpt = RunDir(run_dir).load_checkpoint(map_location=device)
    cfg = RunConfig.from_dict(ckpt["config"])
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])  # char, byte or BPE; old char checkpoints too
    model = build_model(cfg.model, tokenizer.vocab_size)
    model.load_state_dict(clean_state_dict(ckpt["model"]))
    return model.to(device).eval(), tokenizer, cfg, ckpt
