"""Experiment tracking, opt-in: TensorBoard, Weights & Biases, trackio (``--set track=tensorboard,wandb``).

    tracker = Tracking(["tensorboard"], cfg, run_dir)   # fails now, in one line, if a package is missing
    Trainer(..., callbacks=[tracker])                    # build_trainer adds it on rank 0 when track is set

Logged at each evaluation, so training never waits for the device: the train loss of every step
(``train/loss``, at step i+1 for the i-th optimizer step, the losses the Trainer already gathers), the
estimates ``train/loss_estimate``, ``val/loss``, their perplexities, ``val/bits_per_token`` (bits per
char for a char run) and ``val/bits_per_byte`` (when the data's byte count is known), the
learning rate(s) ``lr/group_N``, ``speed/tokens_per_s`` (training steps only: evaluation time is
left out) and ``train/grad_norm`` of the last step when ``grad_clip`` > 0 (clipping computes the norm
anyway; without clipping it would cost an extra pass over the gradients, so it is not logged). The
whole config goes in as hyperparameters. TensorBoard writes ``RUN_DIR/tensorboard``; wandb and
trackio follow their own settings (``WANDB_MODE=offline``, ``TRACKIO_DIR``), project "tinylm".
"""

from __future__ import annotations

import importlib
import json
import math
import time
from pathlib import Path

from tinylm.config import RunConfig
from tinylm.config_checks import tracker_names
from tinylm.errors import TinyLMError
from tinylm.training.trainer import Callback, Trainer

INSTALL = "pip install -e '.[track]'"
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def require(name: str):
    try:
        return importlib.import_module(PACKAGES[name])
    except ImportError:
        raise TinyLMError(f"track={name} needs the {PACKAGES[name]} package; install it with {INSTALL}") from None


def require_trackers(cfg: RunConfig) -> None:
    """Fail, in one line, on a tracker whose package is missing: before the run directory is made."""
    for name in tracker_names(cfg.train.track):
        require(name)


def flat_config(cfg: RunConfig) -> dict:
    return {f"{section}.{key}": value for section, keys in cfg.to_dict().items() for key, value in keys.items()}


class TensorBoardSink:
    def __init__(self, cfg: RunConfig, run_dir: Path):
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", "```\n" + json.dumps(cfg.to_dict(), indent=2) + "\n```", 0)
        self.hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                        for k, v in flat_config(cfg).items()}

    def log(self, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def finish(self, final: dict[str, float]) -> None:
        self.writer.add_hparams(self.hparams, {f"hparam/{k}": v for k, v in final.items()}, run_name="hparams")
        self.writer.close()


class WandbSink:
    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.wandb = require("wandb")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(project="tinylm", name=run_dir.name, config=cfg.to_dict(), dir=str(run_dir))

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def finish(self, final: dict[str, float]) -> None:
        self.run.summary.update(final)
        self.run.finish()


class TrackioSink:
    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.trackio = require("trackio")
        self.trackio.init(project="tinylm", name=run_dir.name, config=flat_config(cfg), embed=False)

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.trackio.log(scalars, step=step)

    def finish(self, final: dict[str, float]) -> None:
        self.trackio.finish()


SINKS = {"tensorboard": TensorBoardSink, "wandb": WandbSink, "trackio": TrackioSink}


class Tracking(Callback):
    """Send the run's numbers to each named tracker; build_trainer adds it on rank 0 only."""

    def __init__(self, names: list[str], cfg: RunConfig, run_dir: Path):
        for name in names:
            require(name)  # every missing package is reported before any tracker starts a run
        self.sinks = [SINKS[name](cfg, run_dir) for name in names]
        self.logged_steps, self.grad_norms = 0, []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.logged_steps = len(trainer.train_losses)  # a resumed run: its earlier steps were logged before
        self.clock, self.eval_seconds = time.perf_counter(), trainer.eval_seconds

    def on_step(self, trainer: Trainer, loss) -> None:
        if trainer.last_grad_norm is not None:
            self.grad_norms.append(trainer.last_grad_norm)  # a device tensor: read at the next evaluation

    def on_eval(self, trainer: Trainer, result: dict[str, float]) -> None:
        new = trainer.train_losses[self.logged_steps:]
        first = len(trainer.train_losses) - len(new)  # train_losses[i] is the loss of the i-th step
        for i, loss in enumerate(new):
            self._log({"train/loss": loss}, first + i + 1)
        self._log(self.eval_scalars(trainer, result, len(new)), result["step"])
        self.logged_steps = len(trainer.train_losses)

    def eval_scalars(self, trainer: Trainer, result: dict[str, float], steps: int) -> dict[str, float]:
        scalars = {"train/loss_estimate": result["train_loss"], "train/perplexity": result["train_perplexity"],
                   "val/loss": result["val_loss"], "val/perplexity": result["val_perplexity"],
                   "val/bits_per_token": result["val_loss"] / math.log(2)}  # per char only for char runs
        if "val_bpb" in result:  # comparable across tokenizers: bytes do not depend on the vocabulary
            scalars["val/bits_per_byte"] = result["val_bpb"]
        for i, group in enumerate(trainer.optimizer.param_groups):
            scalars[f"lr/group_{i}"] = float(group["lr"])
        now, evals = time.perf_counter(), trainer.eval_seconds
        busy = (now - self.clock) - (evals - self.eval_seconds)  # wall time since the last eval, minus evaluating
        if steps and busy > 0:
            scalars["speed/tokens_per_s"] = steps * trainer.tokens_per_step / busy
        self.clock, self.eval_seconds = now, evals
        if self.grad_norms:
            scalars["train/grad_norm"] = float(self.grad_norms[-1])
            self.grad_norms.clear()
        return scalars

    def _log(self, scalars: dict[str, float], step: int) -> None:
        for sink in self.sinks:
            sink.log(scalars, step)

    def on_train_end(self, trainer: Trainer) -> None:
        new = trainer.train_losses[self.logged_steps:]  # steps after the last evaluation
        for i, loss in enumerate(new):
            self._log({"train/loss": loss}, self.logged_steps + i + 1)
        self.logged_steps = len(trainer.train_losses)
        last = trainer.metrics[-1] if trainer.metrics else {}
        final = {k: last[k] for k in ("train_loss", "val_loss", "val_perplexity") if k in last}
        for sink in self.sinks:
            sink.finish(final)


def tracking_for(cfg: RunConfig, run_dir: str | Path | None) -> Tracking | None:
    """The Tracking callback ``cfg.train.track`` asks for (None if empty); ``runs/untracked`` without a run dir."""
    names = tracker_names(cfg.train.track)
    return Tracking(names, cfg, Path(run_dir) if run_dir is not None else Path("runs") / "untracked") if names else None
