"""A whole training run from a ``RunConfig``: the function behind ``tinylm train``.

    cfg = load_config(preset="attention-1")
    result = train_run(cfg, "runs/attention-1")
    result.final["val_perplexity"], result.trainer.metrics

The run directory holds ``config.json``, ``tokenizer.json``, ``ckpt.pt`` and ``metrics.jsonl``.
An existing run is never written over: continue it with ``resume=True`` or pick another directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tinylm.atomic import atomic_write_text
from tinylm.checkpoint import CHECKPOINT_NAME, checkpoint_path, load_checkpoint
from tinylm.config import RunConfig, apply_overrides, validate
from tinylm.data import BatchLoader, load_text, split
from tinylm.device import resolve_device
from tinylm.distributed import DistContext, wrap_model
from tinylm.errors import DataError, TinyLMError
from tinylm.evaluate import Evaluator
from tinylm.models import build_model
from tinylm.optim import make_optimizer
from tinylm.tokenizer import CharTokenizer
from tinylm.train import LRSchedule, Trainer


@dataclass
class Corpus:
    tokenizer: CharTokenizer
    train_data: torch.Tensor  # (N_train,) token ids
    val_data: torch.Tensor  # (N_val,) token ids


@dataclass
class RunResult:
    trainer: Trainer
    corpus: Corpus
    final: dict[str, float]


def prepare_corpus(cfg: RunConfig, tokenizer: CharTokenizer | None = None) -> Corpus:
    """Read the text, build (or reuse) the tokenizer, encode and split it."""
    text = load_text(cfg.train.data or None)
    tokenizer = tokenizer or CharTokenizer.from_text(text)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train_data, val_data = split(data, cfg.train.val_fraction)
    need = cfg.model.block_size + 1
    if len(val_data) < need:
        raise DataError(f"the text is too short: its validation split has {len(val_data)} characters but "
                        f"block_size {cfg.model.block_size} needs {need}; use a longer text or a smaller block_size")
    return Corpus(tokenizer, train_data, val_data)


def resumed_config(run_dir: str | Path, overrides: list[str]) -> RunConfig:
    """The saved config of a run, with ``--set`` overrides (e.g. a larger ``max_iters``) on top."""
    cfg = RunConfig.from_dict(load_checkpoint(checkpoint_path(run_dir))["config"])
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def schedule_for(cfg: RunConfig) -> LRSchedule | None:
    t = cfg.train
    if t.lr_schedule == "constant" and t.warmup_iters == 0:
        return None  # the notebook's loop: the optimizer's lr is never touched
    return LRSchedule(t.learning_rate, t.lr_schedule, t.warmup_iters, t.lr_decay_iters or t.max_iters, t.min_lr,
                      t.warmdown_iters)


def build_trainer(cfg: RunConfig, corpus: Corpus, run_dir: Path | None, resume: bool = False,
                  progress: bool = True, log=None, dist: DistContext | None = None) -> Trainer:
    dist = dist or DistContext()
    device = dist.device or resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)  # process-wide; 1 avoids oversubscribing a shared CPU
    model = build_model(cfg.model, corpus.tokenizer.vocab_size).to(device)
    optimizer = make_optimizer(model, cfg.train)
    m, t = cfg.model, cfg.train
    train_loader = BatchLoader(corpus.train_data, m.block_size, t.batch_size, device, seed=t.seed)
    val_loader = BatchLoader(corpus.val_data, m.block_size, t.batch_size, device, seed=t.seed + 1)
    if t.compile:
        model = torch.compile(model)
    evaluator = Evaluator(model, train_loader, val_loader, corpus.tokenizer.vocab_size, t.eval_iters, dtype=t.dtype,
                          seed=dist.rank, reduce=dist.all_reduce_mean)
    extras = {"config": cfg.to_dict(), "tokenizer": corpus.tokenizer.to_dict()}
    if dist.active:
        torch.manual_seed(t.seed + dist.rank)  # each rank its own dropout masks; the weights are already made
        model = wrap_model(model, dist)
    return Trainer(model, optimizer, train_loader, evaluator, t.max_iters, t.eval_interval,
                   lr_schedule=schedule_for(cfg), grad_clip=t.grad_clip, run_dir=run_dir, resume=resume,
                   target_val_loss=t.target_val_loss, checkpoint_extras=extras,
                   progress=progress and dist.is_main(), log=log if dist.is_main() else _silent,
                   dtype=t.dtype, grad_accum_steps=t.grad_accum_steps, dist=dist)


def _silent(_: str) -> None:
    """The log of ranks other than 0: one copy of every line is enough."""


def refuse_existing_run(run_dir: Path) -> None:
    if (run_dir / CHECKPOINT_NAME).exists():
        raise TinyLMError(f"{run_dir} already holds a run; continue it with --resume or choose another --out")


def start_run_dir(run_dir: Path, cfg: RunConfig, tokenizer: CharTokenizer) -> None:
    refuse_existing_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    tokenizer.save(run_dir / "tokenizer.json")


def train_run(cfg: RunConfig, run_dir: str | Path | None, resume: bool = False,
              progress: bool = True, log=None, dist: DistContext | None = None) -> RunResult:
    """Train (or continue) one run; returns the trainer, the data and the last evaluation.

    Under torchrun pass ``dist`` (``tinylm.distributed.init_from_env()``): rank 0 writes the run dir.
    """
    dist = dist or DistContext()
    run_dir = Path(run_dir) if run_dir is not None else None
    tokenizer = None
    if resume:
        tokenizer = CharTokenizer.from_dict(load_checkpoint(checkpoint_path(run_dir))["tokenizer"])
    corpus = prepare_corpus(cfg, tokenizer)
    if run_dir is not None and not resume:
        dist.run_on_main(lambda: start_run_dir(run_dir, cfg, corpus.tokenizer))
    trainer = build_trainer(cfg, corpus, run_dir, resume, progress, log, dist)
    final = trainer.train()
    return RunResult(trainer, corpus, final)
