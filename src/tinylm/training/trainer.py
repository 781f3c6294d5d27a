"""The training loop, as in the notebook; everything else a run needs plugs in as a callback.

    trainer = Trainer(model, optimizer, train_loader, evaluator, max_iters=4001, eval_interval=500)
    final = trainer.train()   # prints "step 0: perplexity: 113.1, val perplexity: 112.9" every eval

The Trainer owns the loop: learning-rate schedule, gradient accumulation (and DDP's gradient sync),
clipping, evaluations at ``eval_interval``, and the loop state (step, RNG, metrics) that makes a
resumed run bit-identical to an unbroken one. The rest are ``Callback``s: ``ProgressBar``,
``StopAtValLoss``, and ``SaveCheckpoints`` in ``tinylm.training.run``. ``run_steps(n)`` trains n steps
without evaluating (benchmarks time it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm import tqdm

from tinylm.data import BatchLoader
from tinylm.device import autocast, model_device
from tinylm.training.distributed import DistContext
from tinylm.training.evaluations import seconds_trained
from tinylm.training.graph_step import GraphedStep, portable_optimizer_state, set_lr
from tinylm.training.rundir import clean_state_dict, unwrap

# Step losses wait on the device and are read every this many steps (and at each evaluation): one host
# sync per 100 steps. Keeping them all until a rare evaluation held thousands of small allocations
# between the large temporaries of a step, and glibc's heap then grew: +0.5 MB per step for cpu-10min
# (1.46 GB after 2400 steps) against a flat ~450 MB when they are read every 10 steps.
LOSS_SYNC_STEPS = 100


class Callback:
    """Hooks the Trainer calls; override the ones you need."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_step(self, trainer: Trainer, loss: torch.Tensor) -> None:
        """After each optimizer step; ``loss`` is this rank's mean loss, detached, still on the device."""

    def on_eval(self, trainer: Trainer, result: dict[str, float]) -> None: ...

    def should_stop(self, trainer: Trainer, result: dict[str, float]) -> bool:
        return False

    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self, trainer: Trainer) -> dict[str, Any]:
        """Entries this callback adds to (or overrides in) the checkpoint."""
        return {}

    def load_state_dict(self, trainer: Trainer, ckpt: dict[str, Any]) -> None:
        """Take this callback's state back from a checkpoint (after the Trainer has taken its own)."""


class ProgressBar(Callback):
    """A tqdm bar with the loss and tokens/s; ``.item()`` syncs the device, so only every 10 steps."""

    def on_train_begin(self, trainer: Trainer) -> None:
        self.bar = tqdm(total=trainer.max_iters, initial=trainer.step, disable=None, dynamic_ncols=True, leave=False)
        self.clock, self.clock_step = time.perf_counter(), trainer.step

    def on_step(self, trainer: Trainer, loss: torch.Tensor) -> None:
        self.bar.update(1)
        if trainer.step % 10 == 0 and not self.bar.disable:
            rate = trainer.tokens_per_step * (trainer.step - self.clock_step) / (time.perf_counter() - self.clock)
            self.bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:,.0f}")

    def on_train_end(self, trainer: Trainer) -> None:
        self.bar.close()


class StopAtValLoss(Callback):
    """Stop once the val estimate reaches ``target`` (0 or less means never)."""

    def __init__(self, target: float):
        self.target = target

    def should_stop(self, trainer: Trainer, result: dict[str, float]) -> bool:
        return self.target > 0 and result["val_loss"] <= self.target


class Trainer:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_loader: BatchLoader,
                 evaluator, max_iters: int, eval_interval: int, *,
                 lr_schedule: Callable[[int], float] | None = None, grad_clip: float = 0.0,
                 grad_accum_steps: int = 1, dtype: str = "auto", dist: DistContext | None = None,
                 callbacks: Sequence[Callback] | None = None, log: Callable[[str], None] | None = None,
                 cuda_graph: bool = False):
        self.model, self.optimizer, self.evaluator = model, optimizer, evaluator  # evaluator: .estimate()
        self.device = model_device(model)
        self.train_loader = train_loader.to(self.device)
        self.max_iters, self.eval_interval = max_iters, eval_interval
        self.lr_schedule, self.grad_clip, self.dtype = lr_schedule, grad_clip, dtype
        self.grad_accum_steps = grad_accum_steps  # micro-batches per optimizer step, on each rank
        self.dist = dist or DistContext()  # rank 0 of 1 unless launched by torchrun
        self.callbacks = list(callbacks) if callbacks is not None else [ProgressBar()]
        self.log = log or tqdm.write
        self.step, self.last_eval_step = 0, -1
        self.metrics: list[dict[str, float]] = []
        self.train_losses: list[float] = []  # one per step, filled in every LOSS_SYNC_STEPS and at evaluations
        self.eval_seconds = 0.0  # time spent in evaluations, for benchmarks that leave it out
        self.seconds_before = 0.0  # wall time of earlier train() calls and runs before a resume, pauses left out
        self._session_began: float | None = None  # the clock runs only inside train()
        self.last_grad_norm: torch.Tensor | None = None  # the last step's norm before clipping (grad_clip > 0)
        self._pending_losses: list[torch.Tensor] = []  # on the device until read: no sync per step
        self.graphed = self._graphed_step() if cuda_graph else None  # None: every step runs eagerly
        if dtype == "bfloat16" and self.device.type != "cuda":  # autocast_dtype gives None there: say so
            self.log(f"dtype bfloat16: ignored on {self.device.type} (autocast is used on CUDA only); "
                     "training in float32")

    def train(self) -> dict[str, float]:
        """Run until ``max_iters`` (or a callback stops it); return the last evaluation."""
        self.model.train()
        self._session_began = time.perf_counter()
        for callback in self.callbacks:
            callback.on_train_begin(self)
        while self.step < self.max_iters:
            if self._should_evaluate():
                result = self.evaluate()
                if any(callback.should_stop(self, result) for callback in self.callbacks):
                    break
            self.run_steps(1)
        self.sync_losses()
        for callback in self.callbacks:
            callback.on_train_end(self)
        self.seconds_before, self._session_began = self.elapsed(), None
        return self.metrics[-1] if self.metrics else {}

    def run_steps(self, n: int) -> None:
        """Train ``n`` optimizer steps, with no evaluation."""
        if not self.model.training:  # train() calls this once a step: skip the walk over every module
            self.model.train()
        for _ in range(n):
            loss = self.train_step()
            self.step += 1
            for callback in self.callbacks:
                callback.on_step(self, loss)

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step's global batch, across every micro-batch and rank."""
        return (self.train_loader.batch_size * self.train_loader.block_size
                * self.grad_accum_steps * self.dist.world_size)

    def _should_evaluate(self) -> bool:
        at_mark = self.step % self.eval_interval == 0 or self.step == self.max_iters - 1
        return at_mark and self.step != self.last_eval_step

    def _graphed_step(self) -> GraphedStep | None:
        """The CUDA-graph runner, where one can record this run's step (one CUDA device, no DDP)."""
        if self.device.type != "cuda" or self.dist.active:
            where = "under DDP" if self.dist.active else f"on {self.device.type}"
            self.log(f"cuda_graph: ignored {where} (it needs one CUDA device); training without a graph")
            return None
        return GraphedStep(self._update, self.optimizer, self.device, self.log)

    def train_step(self) -> torch.Tensor:
        """One optimizer step (without advancing ``step``); returns the mean loss, detached."""
        if self.lr_schedule is not None:
            lr = self.lr_schedule(self.step)
            for group in self.optimizer.param_groups:
                set_lr(group, lr * group.get("lr_scale", 1.0))
        batches = self.train_loader.get_micro_batches(self.grad_accum_steps, self.dist.rank, self.dist.world_size)
        if self.graphed is not None:
            loss = self.graphed(batches)
        else:
            loss = self._update(batches)
            self.optimizer.zero_grad(set_to_none=True)
        self._pending_losses.append(loss)
        if len(self._pending_losses) >= LOSS_SYNC_STEPS:
            self.sync_losses()
        return loss

    def _update(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Gradients of ``batches``, clipping and the optimizer step: what a CUDA graph records."""
        loss = self._accumulate_gradients(batches)
        if self.grad_clip > 0:
            self.last_grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss

    def _accumulate_gradients(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Forward and backward over this rank's micro-batches; returns their mean loss (detached)."""
        total = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(batches):  # (B, T) each, already on the device
            # DDP all-reduces gradients inside backward(): only on the last micro-step.
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                with autocast(self.device, self.dtype, cache=self.graphed is None):
                    _, loss = self.model(x, y)
                loss = loss / self.grad_accum_steps  # gradients of the mean over all micro-batches
                loss.backward()
            total += loss.detach()
        return total

    def sync_losses(self) -> None:
        """Move the steps' losses to ``train_losses`` (global-batch means: a collective under DDP)."""
        if self._pending_losses:
            losses = self.dist.all_reduce_mean(torch.stack(self._pending_losses).float())
            self.train_losses.extend(losses.tolist())
            self._pending_losses.clear()

    def evaluate(self) -> dict[str, float]:
        self.sync_losses()
        began = time.perf_counter()
        result = {"step": self.step, **self.evaluator.estimate(),
                  "lr": float(self.optimizer.param_groups[0]["lr"]), "time": time.time(),
                  "elapsed": self.elapsed()}
        self.eval_seconds += time.perf_counter() - began
        self.metrics.append(result)
        self.last_eval_step = self.step
        bpb = f", val bpb: {result['val_bpb']:.3f}" if "val_bpb" in result else ""
        self.log(f"step {self.step}: perplexity: {result['train_perplexity']:.1f}, "
                 f"val perplexity: {result['val_perplexity']:.1f}{bpb}")
        for callback in self.callbacks:
            callback.on_eval(self, result)
        return result

    def elapsed(self) -> float:
        """Seconds this run has spent in train(), across resumes, not counting the pauses between them."""
        running = time.perf_counter() - self._session_began if self._session_began is not None else 0.0
        return self.seconds_before + running

    def rehearse(self, steps: int) -> None:
        """Take ``steps`` throwaway steps, then put the run back as it was: weights, optimizer state,
        RNG and data order. Benchmarks call it so that compiling and recording a CUDA graph happen
        before their clock starts (as modded-nanogpt's speedrun does). Tensors are restored in place,
        so a recorded graph stays valid; no callback sees the throwaway steps."""
        weights = {name: t.clone() for name, t in unwrap(self.model).state_dict().items()}
        before = {key: t.clone() for key, t in self._optimizer_tensors().items()}
        rng, losses_kept = self._rng_state(), len(self.train_losses)
        for _ in range(steps):
            self.train_step()
        self._pending_losses.clear()
        del self.train_losses[losses_kept:]
        with torch.no_grad():
            for name, t in unwrap(self.model).state_dict().items():
                t.copy_(weights[name])
            for key, t in self._optimizer_tensors().items():
                if key in before:
                    t.copy_(before[key])
                else:  # state the throwaway steps created: zero moments and step count are a new optimizer's
                    t.zero_()
        self._set_rng_state(rng)

    def _optimizer_tensors(self) -> dict[tuple[int, int, str], torch.Tensor]:
        """Every tensor of the optimizer state (moments, momentum buffers, step counts), keyed stably."""
        optimizers = getattr(self.optimizer, "optimizers", [self.optimizer])  # CombinedOptimizer holds several
        return {(i, id(p), name): t for i, opt in enumerate(optimizers) for p, state in opt.state.items()
                for name, t in state.items() if isinstance(t, torch.Tensor)}

    def _rng_state(self) -> dict[str, torch.Tensor]:
        rng = {"torch": torch.get_rng_state(), "loader": self.train_loader.state_dict()["generator"]}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def _set_rng_state(self, rng: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        self.train_loader.load_state_dict({"generator": rng["loader"]})

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue bit-for-bit: weights, optimizer, step, RNG states, metrics."""
        rng = self._rng_state()
        if self.dist.world_size > 1:  # each rank's own dropout RNG (the loader's is the same on all)
            rng["ranks"] = self.dist.all_gather_object({k: rng[k] for k in ("torch", "cuda") if k in rng})
        state = {"model": unwrap(self.model).state_dict(),
                 "optimizer": portable_optimizer_state(self.optimizer.state_dict()),
                 "step": self.step, "last_eval_step": self.last_eval_step, "rng": rng, "metrics": self.metrics,
                 "train_losses": self.train_losses}
        for callback in self.callbacks:  # e.g. weight averaging: "model" = averaged, "train_weights" = raw
            state.update(callback.state_dict(self))
        return state

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        # With weight averaging, "model" holds the averaged weights and "train_weights" the ones to resume.
        unwrap(self.model).load_state_dict(clean_state_dict(ckpt.get("train_weights", ckpt["model"])))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.last_eval_step = ckpt["step"], ckpt["last_eval_step"]
        self.metrics, self.train_losses = list(ckpt["metrics"]), list(ckpt["train_losses"])
        self.seconds_before = seconds_trained(self.metrics)
        rng = ckpt["rng"]
        if len(rng.get("ranks", [])) == self.dist.world_size:  # same job shape: each rank its own state
            rng = {**rng, **rng["ranks"][self.dist.rank]}
        self._set_rng_state(rng)
        for callback in self.callbacks:
            callback.load_state_dict(self, ckpt)
