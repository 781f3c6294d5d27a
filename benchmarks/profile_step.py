"""Where one training step's time goes: wall time, the device's busy time, and the top kernels or ops.

    python benchmarks/profile_step.py --preset nanogpt-char --set compile=true           # one GPU
    python benchmarks/profile_step.py --preset nanogpt-char --set compile=true --set cuda_graph=true
    python benchmarks/profile_step.py --preset cpu-small --steps 5                       # the CPU

It builds the preset's Trainer, takes ``--warmup`` untimed steps (compiling and recording happen
there), then runs ``--steps`` steps under ``torch.profiler``. On a GPU "busy" is the summed time of
the kernels (CUDA activity); a step whose wall time is far above it is bound by launching kernels
and by Python (what a CUDA graph removes), one close to it by the kernels themselves (what fusing
or a bigger batch helps). On a CPU "busy" is the summed self time of the profiled ops. The table
lists the ``--top`` kernels or ops by their share of busy time, with calls per step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from tinylm.config import load_config
from tinylm.training.run import build_trainer, prepare_corpus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import speed_and_load  # noqa: E402  (a sibling file, not a package)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compiling happens here)")
    p.add_argument("--steps", type=int, default=20, help="profiled steps")
    p.add_argument("--top", type=int, default=12, help="rows in the table")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.steps < 1 or args.top < 1:
        p.error("--warmup must be >= 0, --steps and --top >= 1")
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def busy_us(event, on_gpu: bool) -> float:
    """An event's own time in microseconds: on the device for kernels, on the CPU for ops."""
    if on_gpu:
        return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
    return event.self_cpu_time_total


def profiled_steps(trainer, steps: int, device: torch.device) -> tuple[float, list]:
    """(wall ms per step, the profiler's events grouped by name) over ``steps`` steps."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        synchronize(device)
        wall_ms = (time.perf_counter() - start) * 1000 / steps
    return wall_ms, prof.key_averages()


def print_report(args, device: torch.device, wall_ms: float, events) -> None:
    on_gpu = device.type == "cuda"
    # On a GPU only kernels count as busy time; the CPU-side ops that launched them have no device time.
    rows = [(e.key, busy_us(e, on_gpu) / 1000 / args.steps, e.count / args.steps) for e in events]
    rows = sorted((r for r in rows if r[1] > 0), key=lambda r: r[1], reverse=True)
    busy_ms = sum(ms for _, ms, _ in rows)
    name = torch.cuda.get_device_name(device) if on_gpu else f"cpu ({os.cpu_count()} cores)"
    what = "kernels" if on_gpu else "ops"
    print(f"{args.preset} {' '.join(args.set)} on {name}; {speed_and_load()}")
    print(f"wall {wall_ms:.2f} ms/step; {what} busy {busy_ms:.2f} ms/step ({100 * busy_ms / wall_ms:.0f}%); "
          f"{sum(n for _, _, n in rows):.0f} {what} per step")
    print(f"\n| {what[:-1]} | ms/step | share of busy | calls/step |\n| --- | --- | --- | --- |")
    for key, ms, calls in rows[:args.top]:
        print(f"| {key[:90]} | {ms:.3f} | {100 * ms / busy_ms:.1f}% | {calls:.1f} |")


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(preset=args.preset, overrides=args.set)
    corpus = prepare_corpus(cfg)
    trainer = build_trainer(cfg, corpus, None, progress=False, log=lambda _: None)
    trainer.model.train()
    for _ in range(args.warmup):
        trainer.train_step()
    wall_ms, events = profiled_steps(trainer, args.steps, trainer.device)
    print_report(args, trainer.device, wall_ms, events)


if __name__ == "__main__":
    main()
