"""Time-to-target runs: steps, tokens, training seconds, wall seconds and full-split val loss per seed.

    python benchmarks/speedrun.py --preset cpu-speedrun            # 3 seeds, then the median
    python benchmarks/speedrun.py --preset speedrun --seeds 1 2 3  # on a GPU

Each seed runs in a fresh Python process, so "wall s" counts everything from the interpreter's start
to the final score: imports, reading the corpus, compiling, evaluations and the final exact val loss
over every token of the validation split. "train s" is the time inside the training loop minus the
periodic evaluations. "cpu s" is the child's user+system CPU time: on a shared, loaded machine it shows
what the run costs when wall time is inflated by other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def child(preset: str, seed: int, overrides: list[str]) -> None:
    """One run inside this process; prints its numbers as one JSON line."""
    from tinylm.config import load_config
    from tinylm.evaluate import exact_loss
    from tinylm.training.run import build_trainer, prepare_corpus

    cfg = load_config(preset=preset, overrides=overrides + [f"seed={seed}"])
    corpus = prepare_corpus(cfg)
    trainer = build_trainer(cfg, corpus, None, progress=False, log=lambda _: None)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start - trainer.eval_seconds  # evaluations are not training
    val_loss = exact_loss(trainer.model, corpus.val_data)
    print(json.dumps({"seed": seed, "steps": trainer.step, "tokens": trainer.step * trainer.tokens_per_step,
                      "train_s": train_seconds, "val_loss": val_loss}))


def run_seed(preset: str, seed: int, overrides: list[str], timeout: float | None = None) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--preset", preset, "--seeds", str(seed)]
    out = subprocess.run(cmd + [arg for item in overrides for arg in ("--set", item)],
                         capture_output=True, text=True, check=True, timeout=timeout).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall, "cpu_s": cpu}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu-speedrun")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.preset, args.seeds[0], args.set)
    rows = []
    print(f"preset {args.preset} {' '.join(args.set)}; load average {os.getloadavg()[0]:.2f} at start")
    print("| seed | steps | tokens | train s | wall s | cpu s | full val loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for seed in args.seeds:
        row = run_seed(args.preset, seed, args.set)
        rows.append(row)
        print(f"| {seed} | {row['steps']} | {row['tokens']:,} | {row['train_s']:.1f} | {row['wall_s']:.1f} | "
              f"{row['cpu_s']:.1f} | {row['val_loss']:.4f} |", flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in ("steps", "tokens", "train_s", "wall_s", "cpu_s",
                                                                "val_loss")}
    print(f"| median | {med['steps']:.0f} | {med['tokens']:,.0f} | {med['train_s']:.1f} | {med['wall_s']:.1f} | "
          f"{med['cpu_s']:.1f} | {med['val_loss']:.4f} |")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
