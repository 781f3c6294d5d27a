"""The training loop, as in the notebook, plus what a long run needs.

    trainer = Trainer(model, optimizer, train_loader, evaluator, max_iters=4001, eval_interval=500)
    final = trainer.train()   # prints "step 0: perplexity: 112.3, val perplexity: 113.0" every eval

Keyword options: ``lr_schedule`` (an ``LRSchedule``), ``grad_clip``, ``run_dir`` (checkpoint,
``metrics.jsonl``), ``resume``, ``target_val_loss`` (stop early), ``progress`` (tqdm bar).
At every evaluation the run directory gets a checkpoint with everything needed to continue
bit-for-bit: model, optimizer, step, RNG states, metrics.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from tinylm.atomic import atomic_write_text
from tinylm.checkpoint import CHECKPOINT_NAME, clean_state_dict, load_checkpoint, save_checkpoint, unwrap
from tinylm.data import BatchLoader
from tinylm.device import autocast, model_device
from tinylm.distributed import DistContext
from tinylm.evaluate import Evaluator

METRICS_NAME = "metrics.jsonl"


@dataclass
class LRSchedule:
    """Linear warmup, then constant, cosine decay or linear warmdown to ``min_lr``.

    With ``warmdown_iters`` > 0 the peak holds and the decay (linear or cosine) takes only the last
    ``warmdown_iters`` steps before ``decay_iters``: warmup-stable-decay.
    """

    learning_rate: float
    kind: str = "constant"
    warmup_iters: int = 0
    decay_iters: int = 0
    min_lr: float = 0.0
    warmdown_iters: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            return self.learning_rate * (step + 1) / self.warmup_iters
        if self.kind == "constant":
            return self.learning_rate
        decay_start = self.decay_iters - self.warmdown_iters if self.warmdown_iters else self.warmup_iters
        progress = min(1.0, max(0, step - decay_start) / max(1, self.decay_iters - decay_start))
        if self.kind == "cosine":
            weight = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
        else:
            weight = 1.0 - progress
        return self.min_lr + weight * (self.learning_rate - self.min_lr)


class Trainer:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_loader: BatchLoader,
                 evaluator: Evaluator, max_iters: int, eval_interval: int, *,
                 lr_schedule: Callable[[int], float] | None = None, grad_clip: float = 0.0,
                 run_dir: str | Path | None = None, resume: bool = False, target_val_loss: float = 0.0,
                 checkpoint_extras: dict[str, Any] | None = None, progress: bool = True,
                 log: Callable[[str], None] | None = None, dtype: str = "auto",
                 grad_accum_steps: int = 1, dist: DistContext | None = None):
        self.model, self.optimizer, self.evaluator = model, optimizer, evaluator
        self.device = model_device(model)
        self.train_loader = train_loader.to(self.device)
        self.max_iters, self.eval_interval = max_iters, eval_interval
        self.lr_schedule, self.grad_clip, self.target_val_loss = lr_schedule, grad_clip, target_val_loss
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_extras = checkpoint_extras or {}  # config and tokenizer, saved with the weights
        self.progress, self.dtype = progress, dtype
        self.grad_accum_steps = grad_accum_steps  # micro-batches per optimizer step, on each rank
        self.dist = dist or DistContext()  # rank 0 of 1 unless launched by torchrun
        self.log = log or tqdm.write
        self.step, self.last_eval_step = 0, -1
        self.metrics: list[dict[str, float]] = []
        self.train_losses: list[float] = []  # one per step, filled in at each evaluation
        self._pending_losses: list[torch.Tensor] = []  # kept on the device until then: no sync per step
        if resume:
            self.load(self.run_dir / CHECKPOINT_NAME)

    def train(self) -> dict[str, float]:
        """Run until ``max_iters`` (or the target val loss); return the last evaluation."""
        self.model.train()
        bar = tqdm(total=self.max_iters, initial=self.step, disable=None if self.progress else True,
                   dynamic_ncols=True, leave=False)
        clock, clock_step = time.perf_counter(), self.step
        while self.step < self.max_iters:
            if self._should_evaluate() and self.evaluate()["val_loss"] <= self.target_val_loss:
                break
            loss = self.train_step()
            self.step += 1
            bar.update(1)
            if self.step % 10 == 0 and not bar.disable:  # .item() syncs: only when the bar shows it
                rate = self.tokens_per_step * (self.step - clock_step) / (time.perf_counter() - clock)
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:,.0f}")
        bar.close()
        self._flush_losses()
        self.save()
        return self.metrics[-1] if self.metrics else {}

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step's global batch, across every micro-batch and rank."""
        return (self.train_loader.batch_size * self.train_loader.block_size
                * self.grad_accum_steps * self.dist.world_size)

    def _should_evaluate(self) -> bool:
        at_mark = self.step % self.eval_interval == 0 or self.step == self.max_iters - 1
        return at_mark and self.step != self.last_eval_step

    def train_step(self) -> torch.Tensor:
        if self.lr_schedule is not None:
            lr = self.lr_schedule(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        loss = self._accumulate_gradients()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._pending_losses.append(loss)
        return loss

    def _accumulate_gradients(self) -> torch.Tensor:
        """Forward and backward over this rank's micro-batches; returns their mean loss (detached)."""
        batches = self.train_loader.get_micro_batches(self.grad_accum_steps, self.dist.rank, self.dist.world_size)
        total = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(batches):  # (B, T) each, already on the device
            # DDP all-reduces gradients inside backward(): only on the last micro-step.
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                with autocast(self.device, self.dtype):
                    _, loss = self.model(x, y)
                loss = loss / self.grad_accum_steps  # gradients of the mean over all micro-batches
                loss.backward()
            total += loss.detach()
        return total

    def _flush_losses(self) -> None:
        if self._pending_losses:
            losses = self.dist.all_reduce_mean(torch.stack(self._pending_losses).float())  # global-batch means
            self.train_losses.extend(losses.tolist())
            self._pending_losses.clear()

    def evaluate(self) -> dict[str, float]:
        self._flush_losses()
        result = {"step": self.step, **self.evaluator.estimate(),
                  "lr": self.optimizer.param_groups[0]["lr"], "time": time.time()}
        self.metrics.append(result)
        self.last_eval_step = self.step
        self.log(f"step {self.step}: perplexity: {result['train_perplexity']:.1f}, "
                 f"val perplexity: {result['val_perplexity']:.1f}")
        self.save()
        return result

    def state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "loader": self.train_loader.state_dict()["generator"]}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.dist.world_size > 1:  # each rank's own dropout RNG (the loader's is the same on all)
            rng["ranks"] = self.dist.all_gather_object({k: rng[k] for k in ("torch", "cuda") if k in rng})
        return {**self.checkpoint_extras, "model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step,
                "last_eval_step": self.last_eval_step, "rng": rng, "metrics": self.metrics,
                "train_losses": self.train_losses}

    def save(self) -> None:
        """Checkpoint, then the metrics file; both atomic, so an interruption loses nothing whole."""
        if self.run_dir is None:
            return
        state = self.state()  # a collective under DDP: every rank gets here
        if not self.dist.is_main():
            return
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, state)
        lines = "".join(json.dumps(m) + "\n" for m in self.metrics)
        atomic_write_text(self.run_dir / METRICS_NAME, lines)

    def load(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        unwrap(self.model).load_state_dict(clean_state_dict(ckpt["model"]))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.last_eval_step = ckpt["step"], ckpt["last_eval_step"]
        self.metrics, self.train_losses = list(ckpt["metrics"]), list(ckpt["train_losses"])
        rng = ckpt["rng"]
        if len(rng.get("ranks", [])) == self.dist.world_size:  # same job shape: each rank its own state
            rng = {**rng, **rng["ranks"][self.dist.rank]}
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        self.train_loader.load_state_dict({"generator": ckpt["rng"]["loader"]})
