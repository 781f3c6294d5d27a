"""Whole-step CUDA graphs: a training step's forward, backward, clipping and optimizer update, recorded
once and then replayed with a single launch.

    step = GraphedStep(trainer_update, optimizer, device, print)   # the Trainer makes one when cuda_graph=True
    loss = step(batches)      # the first WARMUP_STEPS calls run eagerly, the next records, then replays

Why: a small model on a GPU spends its step launching kernels from Python. The ``speedrun`` preset's
6 x 384 model took 24 ms a step eagerly on an H100 for ~1 TFLOP of arithmetic. A replayed graph
launches the same kernels without Python in between. What a replay needs, and where it comes from:

- Fixed addresses. Each step's batch is copied into the input tensors the graph recorded; the
  gradients, the optimizer state and the loss live in the graph's memory and are overwritten in place.
- Learning rates the schedule can change: each group's ``lr`` becomes a 0-dim device tensor that the
  Trainer fills before the replay (``set_lr``), and AdamW runs with ``capturable=True``.
- Nothing created lazily while recording: the first steps run eagerly, on a side stream as PyTorch
  asks, and make the optimizer state. They are real training steps, not throwaway ones.
- No host synchronisation inside the step (the Trainer has none) and autocast without its weight cache.

Dropout stays random: PyTorch moves the graph's RNG offset on every replay. If recording fails, the
run says why in one line and goes on eagerly. A failed capture leaves the CUDA generator in capture
mode (every later random op then fails), so its state is put back from a copy taken before recording.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import torch

WARMUP_STEPS = 3  # eager steps before recording: cuBLAS handles, autograd and optimizer state get made


def set_lr(group: dict, value: float) -> None:
    """Set a param group's learning rate; a graphed step's tensor is filled in place (its address is recorded)."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


def use_device_lrs(optimizer, device: torch.device) -> None:
    """Make every group's lr a 0-dim tensor on ``device`` (read by the recorded kernels, filled by
    ``set_lr``) and let AdamW's groups be recorded (``capturable``; Muon needs no flag)."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
        if "capturable" in group:
            group["capturable"] = True


def portable_optimizer_state(state: dict) -> dict:
    """An optimizer state_dict with float learning rates and ``capturable`` off: what a checkpoint holds,
    so a graphed run resumes on a CPU and a plain run resumes with a graph (it records afresh)."""
    if "optimizers" in state:  # CombinedOptimizer
        return {**state, "optimizers": [portable_optimizer_state(s) for s in state["optimizers"]]}
    groups = []
    for group in state["param_groups"]:
        group = {**group, "lr": float(group["lr"])}
        if group.get("capturable"):
            group["capturable"] = False
        groups.append(group)
    return {**state, "param_groups": groups}


def same_layout_copy(t: torch.Tensor) -> torch.Tensor:
    """A copy with ``t``'s strides. The loader's x and y are views of one (B, T + 1) buffer (row stride
    T + 1); torch.compile guards on strides, so a contiguous input would recompile the model inside
    the capture, and compiling cannot be recorded."""
    return torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device=t.device).copy_(t)


def cuda_generator(device: torch.device) -> torch.Generator:
    """The default CUDA generator of ``device`` (dropout draws from it)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.default_generators[index]


def no_recompiling():
    """While recording, a compiled model that would compile again (which cannot be recorded) raises
    and says why. torch._dynamo is imported only where something was compiled; otherwise, nothing."""
    dynamo = sys.modules.get("torch._dynamo")
    return dynamo.config.patch(error_on_recompile=True) if dynamo else contextlib.nullcontext()


def why(exc: BaseException) -> str:
    """An exception's first line, and for a recompile the first guard that failed (its reason)."""
    lines = [line.strip() for line in str(exc).strip().splitlines()] or [type(exc).__name__]
    guard = next((line for line in lines[1:] if line.startswith("- ")), None)
    return f"{lines[0]}: {guard[2:]}" if guard else lines[0]


class GraphedStep:
    """Runs ``update(batches) -> loss`` (gradients, clipping, optimizer step) as a replayed CUDA graph."""

    def __init__(self, update: Callable[[list], torch.Tensor], optimizer, device: torch.device,
                 log: Callable[[str], None], warmup_steps: int = WARMUP_STEPS):
        self.update, self.optimizer, self.device, self.log = update, optimizer, device, log
        self.warmup_steps, self.eager_steps = warmup_steps, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.static_loss: torch.Tensor | None = None
        self.failed = False  # recording failed once: train eagerly from then on

    def __call__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        if self.graph is None and (self.failed or self.eager_steps < self.warmup_steps):
            return self._eager(batches)
        if self.graph is None and not self._record(batches):
            return self._eager(batches)
        for (x, y), (static_x, static_y) in zip(batches, self.static_batches):
            static_x.copy_(x)  # (B, T) into the recorded input's memory
            static_y.copy_(y)
        self.graph.replay()
        return self.static_loss.clone()  # the next replay overwrites static_loss

    def _eager(self, batches) -> torch.Tensor:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            loss = self.update(batches)
            self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.eager_steps += 1
        return loss

    def _record(self, batches) -> bool:
        """Record one step on ``batches`` and replay it (recording alone runs nothing); False if it failed."""
        use_device_lrs(self.optimizer, self.device)
        self.static_batches = [(same_layout_copy(x), same_layout_copy(y)) for x, y in batches]
        self.optimizer.zero_grad(set_to_none=True)  # backward makes the gradients inside the graph's memory
        graph = torch.cuda.CUDAGraph()
        generator = cuda_generator(self.device)
        rng_before = generator.clone_state()  # a copy that is not in capture mode
        try:
            with no_recompiling(), torch.cuda.graph(graph):
                self.static_loss = self.update(self.static_batches)
        except RuntimeError as exc:
            generator.graphsafe_set_state(rng_before)
            self.failed, self.static_batches = True, []
            self.optimizer.zero_grad(set_to_none=True)
            self.log(f"cuda_graph: recording the training step failed ({why(exc)}); training on without a graph")
            return False
        self.graph = graph
        return True
