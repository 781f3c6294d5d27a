"""A whole training run from a ``RunConfig``: the function behind ``tinylm train``.

    cfg = load_config(preset="attention-1")
    result = train_run(cfg, "runs/attention-1")
    result.final["val_perplexity"], result.trainer.metrics

One sentence: read and encode the text, build the model, optimizer and loaders from the config,
then let the Trainer loop, evaluating every ``eval_interval`` steps and saving the run directory
(``tinylm.training.rundir``) after each evaluation. An existing run is never written over:
continue it with ``resume=True`` or pick another directory.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.config import RunConfig, apply_overrides, validate
from tinylm.data import CharTokenizer, Tokenizer, UnknownCharactersError, load_text, split, tokenizer_from_dict
from tinylm.data.cache import cached_dataset, unseen_characters
from tinylm.data.loader import make_loader
from tinylm.data.shards import is_prepared, open_prepared
from tinylm.device import resolve_device
from tinylm.errors import CheckpointError, ConfigError, DataError
from tinylm.evaluate import Evaluator, utf8_bytes
from tinylm.model import build_model
from tinylm.optim import LRSchedule, make_optimizer
from tinylm.training.averaging import averaging_callbacks
from tinylm.training.ckpt_checks import check_training_state
from tinylm.training.compiled import compile_for_training
from tinylm.training.distributed import DistContext, wrap_model
from tinylm.training.finetune import refuse_model_changes, source_weights
from tinylm.training.rundir import RunDir
from tinylm.training.tracking import require_trackers, tracking_for
from tinylm.training.trainer import Callback, ProgressBar, StopAtValLoss, Trainer


@dataclass
class Corpus:
    tokenizer: Tokenizer
    train_data: torch.Tensor | np.ndarray  # (N_train,) token ids; a memmap for a prepared directory
    val_data: torch.Tensor | np.ndarray  # (N_val,) token ids; a memmap for prepared data
    val_bytes: int = 0  # UTF-8 bytes the val tokens stand for: bits per byte divide by it

    @property
    def val_tokens_per_byte(self) -> float | None:
        return len(self.val_data) / self.val_bytes if self.val_bytes else None


@dataclass
class RunResult:
    trainer: Trainer
    corpus: Corpus
    final: dict[str, float]


class SaveCheckpoints(Callback):
    """Write the run directory after every evaluation and at the end (rank 0 writes; all ranks gather)."""

    def __init__(self, run_dir: RunDir, extras: dict):
        self.run_dir, self.extras = run_dir, extras  # extras: config and tokenizer, saved with the weights

    def save(self, trainer: Trainer) -> None:
        state = trainer.state_dict()  # a collective under DDP: every rank gets here
        if trainer.dist.is_main():
            self.run_dir.save({**self.extras, **state}, trainer.metrics)

    def on_eval(self, trainer: Trainer, result: dict[str, float]) -> None:
        self.save(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        self.save(trainer)


def prepare_corpus(cfg: RunConfig, tokenizer: Tokenizer | None = None) -> Corpus:
    """The run's tokens: Tiny Shakespeare encoded in memory, or a prepared directory memory-mapped.

    A text file (``--data notes.txt``) is prepared once into the data cache (``tinylm.data.cache``)
    and memory-mapped from there, so a 2 GB file is neither held in memory nor encoded twice.
    """
    source = cfg.train.data
    if source and is_prepared(source):
        corpus = _prepared_corpus(source, tokenizer)
    elif source:
        entry = cached_dataset(source, cfg.train.keep_crlf, cfg.train.val_fraction, tokenizer)
        corpus = _prepared_corpus(str(entry), tokenizer)
    else:
        text = load_text(None, cfg.train.keep_crlf)
        tokenizer = tokenizer or CharTokenizer.from_text(text)
        data = torch.from_numpy(_encode_data(tokenizer, text, "Tiny Shakespeare"))
        corpus = Corpus(tokenizer, *split(data, cfg.train.val_fraction))
        corpus.val_bytes = utf8_bytes(corpus.val_data, tokenizer.token_bytes())
    need = cfg.model.block_size + 1
    if len(corpus.val_data) < need:
        raise DataError(f"the text is too short: its validation split has {len(corpus.val_data)} tokens but "
                        f"block_size {cfg.model.block_size} needs {need}; use a longer text or a smaller block_size")
    return corpus


def _encode_data(tokenizer: Tokenizer, text: str, name: str) -> np.ndarray:
    """(N,) int64 ids; characters the run's tokenizer never saw are the data file's fault, not a prompt's."""
    try:
        return tokenizer.encode_array(text)
    except UnknownCharactersError as exc:
        raise unseen_characters(name, exc) from None


def _prepared_corpus(path: str, tokenizer: Tokenizer | None) -> Corpus:
    """Both splits stay memory-mapped: batches and the exact val loss read only the windows they use."""
    data = open_prepared(path)
    if tokenizer is not None and tokenizer.to_dict() != data.tokenizer.to_dict():
        raise DataError(f"the prepared data {path} uses another tokenizer ({data.tokenizer.kind}, vocab "
                        f"{data.tokenizer.vocab_size}) than this run ({tokenizer.kind}, vocab {tokenizer.vocab_size}); "
                        "give the data the run was trained on, or train a new run")
    return Corpus(data.tokenizer, data.train, data.val, int(data.meta["splits"]["val"].get("bytes", 0)))


def resumed_config(run_dir: str | Path, overrides: list[str]) -> RunConfig:
    """The saved config of a run, with ``--set`` overrides (e.g. a larger ``max_iters``) on top."""
    ckpt = RunDir(run_dir).load_checkpoint()
    saved = RunConfig.from_dict(ckpt["config"])
    cfg = copy.deepcopy(saved)
    apply_overrides(cfg, overrides)
    validate(cfg)
    refuse_model_changes(saved, cfg, "a resumed run must keep its model keys; drop those --set items, or train a "
                                     "new run with another --out")
    step = ckpt.get("step")
    if isinstance(step, int) and cfg.train.max_iters < step:  # the loop would not run, and the run would shrink
        raise ConfigError(f"max_iters {cfg.train.max_iters} is below the saved step: the run is already at step "
                          f"{step}; give --set max_iters={step} or more")
    return cfg


def schedule_for(cfg: RunConfig) -> LRSchedule | None:
    t = cfg.train
    if t.lr_schedule == "constant":
        # the notebook's loop leaves the optimizer's lr alone; a warmup still needs a schedule
        return LRSchedule(t.learning_rate, "constant", t.warmup_iters) if t.warmup_iters else None
    return LRSchedule(t.learning_rate, t.lr_schedule, t.warmup_iters, t.lr_decay_iters or t.max_iters, t.min_lr,
                      t.warmdown_iters)


def build_trainer(cfg: RunConfig, corpus: Corpus, run_dir: str | Path | None, resume: bool = False,
                  progress: bool = True, log=None, dist: DistContext | None = None,
                  initial_weights: dict[str, torch.Tensor] | None = None) -> Trainer:
    """``initial_weights``: a state_dict to start from (a fine-tune) instead of the random init."""
    dist = dist or DistContext()
    device = dist.device or resolve_device(cfg.train.device)
    m, t = cfg.model, cfg.train
    torch.manual_seed(t.seed)
    if t.threads:
        torch.set_num_threads(t.threads)  # process-wide; 1 avoids oversubscribing a shared CPU
    model = build_model(m, corpus.tokenizer.vocab_size)
    if initial_weights is not None:  # before the optimizer, compiling, DDP and averaging see the weights
        model.load_state_dict(initial_weights)
    model = model.to(device)
    optimizer = make_optimizer(model, t)
    vocab = corpus.tokenizer.vocab_size
    train_loader = make_loader(corpus.train_data, m.block_size, t.batch_size, device, seed=t.seed, vocab_size=vocab)
    val_loader = make_loader(corpus.val_data, m.block_size, t.batch_size, device, seed=t.seed + 1, vocab_size=vocab)
    if t.compile:
        model = compile_for_training(model, t.compile_scope)
    evaluator = Evaluator(model, train_loader, val_loader, eval_iters=t.eval_iters, dtype=t.dtype,
                          seed=dist.rank, reduce=dist.all_reduce_mean, val_tokens_per_byte=corpus.val_tokens_per_byte)
    if dist.active:
        torch.manual_seed(t.seed + dist.rank)  # each rank its own dropout masks; the weights are already made
        model = wrap_model(model, dist)
    callbacks = run_callbacks(cfg, corpus, run_dir, progress, dist)
    trainer = Trainer(model, optimizer, train_loader, evaluator, t.max_iters, t.eval_interval,
                      lr_schedule=schedule_for(cfg), grad_clip=t.grad_clip, grad_accum_steps=t.grad_accum_steps,
                      dtype=t.dtype, dist=dist, callbacks=callbacks, log=log if dist.is_main() else _silent,
                      cuda_graph=t.cuda_graph)
    if resume:
        resume_from(trainer, RunDir(run_dir))
    return trainer


def run_callbacks(cfg: RunConfig, corpus: Corpus, run_dir: str | Path | None, progress: bool,
                  dist: DistContext) -> list[Callback]:
    """Early stop, progress bar, weight averaging around the checkpoint save, experiment tracking.

    Order matters: averaging swaps the averaged weights in before the save and the raw ones back after.
    """
    t = cfg.train
    callbacks: list[Callback] = [StopAtValLoss(t.target_val_loss)]
    if progress and dist.is_main():
        callbacks.append(ProgressBar())
    before_save, after_save = averaging_callbacks(t.ema_decay, t.average_last)  # both empty unless asked for
    callbacks += before_save
    if run_dir is not None:
        extras = {"config": cfg.to_dict(), "tokenizer": corpus.tokenizer.to_dict()}
        callbacks.append(SaveCheckpoints(RunDir(run_dir), extras))
    callbacks += after_save
    tracking = tracking_for(cfg, run_dir) if dist.is_main() else None
    if tracking is not None:
        callbacks.append(tracking)
    return callbacks


def resume_from(trainer: Trainer, run_dir: RunDir) -> None:
    """Load the optimizer, step and RNG state too; a checkpoint missing them is an error, not a traceback."""
    ckpt = run_dir.load_checkpoint(map_location=trainer.device)
    check_training_state(ckpt, run_dir.checkpoint)
    try:
        trainer.load_state_dict(ckpt)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""  # torch's can run to 17 lines
        raise CheckpointError(f"checkpoint {run_dir.checkpoint} cannot be resumed: its training state is "
                              f"incomplete or malformed ({type(exc).__name__}: {first}); start a new run") from None


def _silent(_: str) -> None:
    """The log of ranks other than 0: one copy of every line is enough."""


def train_run(cfg: RunConfig, run_dir: str | Path | None, resume: bool = False,
              progress: bool = True, log=None, dist: DistContext | None = None) -> RunResult:
    """Train (or continue) one run; returns the trainer, the data and the last evaluation.

    Under torchrun pass ``dist`` (``tinylm.training.distributed.init_from_env()``): rank 0 writes the run dir.
    """
    dist = dist or DistContext()
    require_trackers(cfg)
    tokenizer, initial = None, None
    if resume:
        dist.run_on_main(RunDir(run_dir).check_writable)
        dist.run_on_main(lambda: RunDir(run_dir).remove_stale_temps())  # left by a kill mid-write
        tokenizer = tokenizer_from_dict(RunDir(run_dir).load_checkpoint()["tokenizer"])
    elif cfg.train.init_from:  # a fine-tune: the source's weights and tokenizer (resuming one needs neither)
        initial, tokenizer = source_weights(cfg)
    corpus = prepare_corpus(cfg, tokenizer)
    if run_dir is not None and not resume:
        dist.run_on_main(lambda: RunDir(run_dir).start(cfg, corpus.tokenizer))
    trainer = build_trainer(cfg, corpus, run_dir, resume, progress, log, dist, initial)
    if resume:  # only once the checkpoint has loaded: a refused resume leaves config.json as it was
        dist.run_on_main(lambda: RunDir(run_dir).write_config(cfg))
    final = trainer.train()
    return RunResult(trainer, corpus, final)
