"""Run directories with random weights (no training), for the inspector's tests and its load benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tinylm.config import RunConfig, apply_overrides
from tinylm.data import CharTokenizer
from tinylm.model import build_model
from tinylm.training.rundir import RunDir, save_checkpoint

TEXT = "the quick brown fox jumps over the lazy dog.\n"
TINY = ["n_layer=2", "n_embed=32", "n_heads=2", "block_size=16", "init=pytorch"]


def checkpoint(seed: int, step: int, overrides: list[str] = TINY) -> dict:
    """A checkpoint of a transformer with seeded random weights, as ``load_run`` reads it."""
    cfg = RunConfig()
    apply_overrides(cfg, overrides)
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(seed)
    model = build_model(cfg.model, tok.vocab_size)
    return {"config": cfg.to_dict(), "tokenizer": tok.to_dict(), "model": model.state_dict(), "step": step}


def make_run(path: Path, seed: int = 0, step: int = 0, metrics: list[dict] | None = None) -> Path:
    ckpt = checkpoint(seed, step)
    run = RunDir(path)
    run.start(RunConfig.from_dict(ckpt["config"]), CharTokenizer.from_dict(ckpt["tokenizer"]))
    run.save(ckpt, metrics if metrics is not None else [metric(0)])
    return path


def replace_checkpoint(path: Path, seed: int, step: int) -> None:
    save_checkpoint(RunDir(path).checkpoint, checkpoint(seed, step))  # atomic: a rename, as the trainer does


def metric(step: int) -> dict:
    loss = 3.8 - step / 100
    return {"step": step, "train_loss": loss, "val_loss": loss + 0.1, "train_perplexity": 2.718 ** loss,
            "val_perplexity": 2.718 ** (loss + 0.1), "lr": 1e-3, "time": 1.0e9 + step}


def append_metric(path: Path, step: int) -> None:
    with open(RunDir(path).metrics, "a", encoding="utf-8") as f:
        f.write(json.dumps(metric(step)) + "\n")
