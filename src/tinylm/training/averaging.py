"""Weight averaging callbacks: an exponential moving average (EMA) and the mean of the last K checkpoints.

    trainer = Trainer(..., callbacks=[WeightEMA(0.999)])        # or: tinylm train --set ema_decay=0.999
    trainer = Trainer(..., callbacks=[AverageLastCheckpoints(4)])  # or: --set average_last=4

Both leave training itself alone (the optimizer steps the raw weights) and change which weights a run
is judged and used by:

- ``WeightEMA``: after every step, ema <- d * ema + (1 - d) * w, with d = min(decay, (1 + t) / (10 + t))
  at step t, so the first steps are not averaged with the random init. Every evaluation scores the
  EMA weights (swapped in for the estimate, then swapped back).
- ``AverageLastCheckpoints``: keeps the weights of the last K checkpoints (one at each evaluation and
  one at the end) and, at the end, their plain mean.

The checkpoint's ``model`` holds the averaged weights, so ``tinylm eval``, ``sample`` and ``serve``
use them with no change; the raw weights go in ``train_weights``, with which ``Trainer.load_state_dict``
resumes bit-for-bit. After ``train()`` the in-memory model holds the averaged weights too.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch

from tinylm.training.rundir import clean_state_dict, unwrap
from tinylm.training.trainer import Callback, Trainer


def float_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state (prefix-free names)."""
    return {k: v.detach().clone() for k, v in clean_state_dict(unwrap(model).state_dict()).items()}


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    unwrap(model).load_state_dict(state)


class _AveragedEvaluator:
    """Wraps the Trainer's evaluator: each estimate scores the averaged weights."""

    def __init__(self, inner, owner: WeightEMA):
        self.inner, self.owner = inner, owner

    @property
    def model(self) -> torch.nn.Module:
        """The wrapped evaluator's model: after ``train()`` it holds the averaged weights (the ones saved)."""
        return self.inner.model

    def estimate(self) -> dict[str, float]:
        with self.owner.swapped_in():
            return self.inner.estimate()


class WeightEMA(Callback):
    """An exponential moving average of the weights, evaluated and saved in their place."""

    def __init__(self, decay: float):
        self.decay = decay
        self.ema: dict[str, torch.Tensor] | None = None
        self.trainer: Trainer | None = None
        self.final_raw: dict[str, torch.Tensor] | None = None  # the raw weights, once train() has ended

    def on_train_begin(self, trainer: Trainer) -> None:
        self.trainer = trainer
        if self.final_raw is not None:  # train() again: continue from the raw weights, not the EMA
            load_weights(trainer.model, self.final_raw)
            self.final_raw = None
        if self.ema is None:  # a resumed run has it from the checkpoint already
            self.ema = float_state(trainer.model)
        live = clean_state_dict(unwrap(trainer.model).state_dict(keep_vars=True))  # the tensors steps change
        keys = [k for k, v in live.items() if v.is_floating_point()]
        self.pairs = ([self.ema[k] for k in keys], [live[k] for k in keys])
        if not isinstance(trainer.evaluator, _AveragedEvaluator):
            trainer.evaluator = _AveragedEvaluator(trainer.evaluator, self)

    @torch.no_grad()
    def on_step(self, trainer: Trainer, loss: torch.Tensor) -> None:
        t = trainer.step - 1  # the step just taken
        d = min(self.decay, (1 + t) / (10 + t))
        torch._foreach_lerp_(*self.pairs, 1.0 - d)  # ema += (1 - d) * (w - ema)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The EMA weights in the model for the block; the raw weights come back after it."""
        raw = float_state(self.trainer.model)
        load_weights(self.trainer.model, self.ema)
        try:
            yield
        finally:
            load_weights(self.trainer.model, raw)

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        if self.ema is None:
            return {}
        return {"model": self.ema, "train_weights": self.final_raw or float_state(trainer.model)}

    def load_state_dict(self, trainer: Trainer, ckpt: dict[str, Any]) -> None:
        if "train_weights" in ckpt:  # a checkpoint written with averaging: its "model" is the EMA
            self.ema = {k: v.detach().clone() for k, v in clean_state_dict(ckpt["model"]).items()}

    def on_train_end(self, trainer: Trainer) -> None:
        self.final_raw = float_state(trainer.model)  # runs after SaveCheckpoints (build_trainer's order)
        load_weights(trainer.model, self.ema)


class AverageLastCheckpoints(Callback):
    """The mean of the weights at the last ``k`` checkpoints (evaluations, and the end of training)."""

    def __init__(self, k: int):
        self.snapshots: deque[dict[str, torch.Tensor]] = deque(maxlen=k)
        self.averaged: dict[str, torch.Tensor] | None = None
        self.snapshot_step = -1  # the step of the newest snapshot taken in this process

    def on_eval(self, trainer: Trainer, result: dict[str, float]) -> None:
        if trainer.step > 0:  # the random init is a checkpoint too, but never worth averaging in
            self.snapshots.append(float_state(trainer.model))
            self.snapshot_step = trainer.step

    @staticmethod
    def average(snapshots: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([s[k] for s in snapshots]).mean(0) if v.is_floating_point() else v
                for k, v in snapshots[0].items()}

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        state: dict[str, Any] = {"average_snapshots": list(self.snapshots)}
        if self.averaged is not None:
            state |= {"model": self.averaged, "train_weights": float_state(trainer.model)}
        return state

    def load_state_dict(self, trainer: Trainer, ckpt: dict[str, Any]) -> None:
        self.snapshots.extend(ckpt.get("average_snapshots", []))

    def on_train_end(self, trainer: Trainer) -> None:
        """Average the final weights with the last k-1 kept ones (this runs before SaveCheckpoints' save).

        The final weights are not kept as a snapshot, so a run resumed from here keeps the same
        snapshots as one that never stopped.
        """
        final, kept = float_state(trainer.model), list(self.snapshots)
        if kept and self.snapshot_step == trainer.step:  # stopped at an evaluation (target reached): the
            kept.pop()  # newest snapshot is the final weights, which must count once
        kept = kept[-(self.snapshots.maxlen - 1):] if self.snapshots.maxlen > 1 else []  # K - 1, or all there are
        self.averaged = self.average(kept + [final])


class LoadAveragedWeights(Callback):
    """Last of all callbacks: put ``AverageLastCheckpoints``' mean into the model once the run is saved."""

    def __init__(self, averager: AverageLastCheckpoints):
        self.averager = averager

    def on_train_end(self, trainer: Trainer) -> None:
        load_weights(trainer.model, self.averager.averaged)


def averaging_callbacks(ema_decay: float, average_last: int) -> tuple[list[Callback], list[Callback]]:
    """(callbacks to run before SaveCheckpoints, callbacks to run after it) for the two config keys."""
    if ema_decay > 0:
        return [], [WeightEMA(ema_decay)]
    if average_last > 0:
        averager = AverageLastCheckpoints(average_last)
        return [averager], [LoadAveragedWeights(averager)]
    return [], []
