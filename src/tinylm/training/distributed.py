"""Data-parallel training across processes (DDP), launched by PyTorch's ``torchrun``.

    torchrun --standalone --nproc_per_node=2 -m tinylm train --preset attention-1 --out runs/a1
    tinylm train --nproc 2 --preset attention-1 --out runs/a1    # the same: tinylm starts torchrun

torchrun starts one process per rank and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
``init_from_env`` reads them, joins the process group (NCCL on GPUs, gloo on CPU) with a bounded
timeout and picks this rank's device. Batch sizes: ``batch_size`` is one rank's micro-batch, so
one optimizer step sees ``batch_size * grad_accum_steps * world_size`` sequences (the global batch).
The loader draws that whole global batch from one generator seeded alike on every rank and each
rank takes its own slice, so the data order does not depend on how the batch is split.
Faults: torchrun stops every rank when one dies, and each collective gives up after
``$TINYLM_DIST_TIMEOUT`` seconds (default 300), so a lost peer ends the job instead of hanging it.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from tinylm.device import resolve_device
from tinylm.errors import TinyLMError
from tinylm.training.rundir import RunDir

TIMEOUT_ENV = "TINYLM_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


@dataclass
class DistContext:
    """Where this process stands in the job; the defaults describe a plain single process."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1 and torch.distributed.is_initialized()

    def is_main(self) -> bool:
        """Rank 0 prints, logs and writes the run directory."""
        return self.rank == 0

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over all ranks (the same result on every rank); a no-op alone."""
        if not self.active:
            return tensor
        reduced = tensor.detach().clone()
        torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.SUM)  # gloo has no AVG
        return reduced / self.world_size

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (e.g. each rank's RNG state, for an exact resume)."""
        if not self.active:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    def run_on_main(self, action: Callable[[], None]) -> None:
        """Run ``action`` on rank 0 and raise its TinyLMError on every rank, so no rank waits forever."""
        message = ""
        if self.is_main():
            try:
                action()
            except TinyLMError as exc:
                message = str(exc)
        if self.active:
            box = [message]
            torch.distributed.broadcast_object_list(box, src=0)
            message = box[0]
        if message:
            raise TinyLMError(message)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def cleanup(self) -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def exit_finished_rank() -> None:
    """End a torchrun rank whose work is done and saved, skipping C++ static destructors.

    On this 2-core machine about one 2-rank gloo job in four (also with tinylm 0.1) had a rank abort
    in those destructors after everything was written ("terminate called without an active
    exception"), which torchrun reports as a failed job.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise TinyLMError(f"${name} must be an integer, got {os.environ[name]!r}; launch with torchrun") from None


def timeout_seconds() -> float:
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise TinyLMError(f"${TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return value


def _rank_device(device_name: str, local_rank: int) -> torch.device:
    """This rank's device: GPU ``local_rank`` when CUDA is used, else the CPU."""
    device = resolve_device(device_name)
    if device.type == "mps":
        raise TinyLMError("DDP does not run on MPS; use --device cpu (gloo) or a CUDA machine (NCCL)")
    if device.type != "cuda":
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise TinyLMError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                          "use --nproc_per_node at most the number of GPUs")
    return torch.device("cuda", local_rank)


def init_from_env(device_name: str = "auto") -> DistContext | None:
    """Join torchrun's process group; None when this process was not started by torchrun."""
    if not launched_by_torchrun():
        return None
    ctx = DistContext(_env_int("RANK"), _env_int("LOCAL_RANK"), _env_int("WORLD_SIZE"))
    ctx.device = _rank_device(device_name, ctx.local_rank)
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if ctx.world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if ctx.device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds()))
    return ctx


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` (a no-op for a job of one rank)."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # Buffers (causal masks, rotary tables) are constants: no need to broadcast them every forward.
    # Newer PyTorch renamed the option; older ones only know broadcast_buffers.
    params = inspect.signature(DistributedDataParallel).parameters
    new_name = "forward_sync_buffers" in params
    no_buffer_sync = {"forward_sync_buffers": False} if new_name else {"broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=device_ids, **no_buffer_sync)


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``: what each rank runs."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """``python -m torch.distributed.run`` on one node, running ``tinylm <argv>`` on every rank."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "--max_restarts=0", "-m", "tinylm", *strip_nproc(argv)]


def launch(nproc: int, argv: list[str], run_dir: Path, resume: bool = False) -> int:
    """Start torchrun for the user; on a failed job say so in one line and where the checkpoint is.

    The caller has checked the config and device; a new run's directory is checked here, so these
    user errors get one line before any process starts.
    """
    if nproc < 1:
        raise TinyLMError(f"--nproc must be >= 1, got {nproc}")
    if launched_by_torchrun():
        raise TinyLMError("--nproc starts torchrun itself; under torchrun leave --nproc out")
    if not resume:
        RunDir(run_dir).refuse_existing()
    code = subprocess.run(torchrun_command(nproc, argv)).returncode
    if code != 0:
        print(f"tinylm: error: distributed training failed (torchrun exit code {code}; the failing rank is "
              f"named above); the last checkpoint in {run_dir} is intact: continue with --resume", file=sys.stderr)
    return code
