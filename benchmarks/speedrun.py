"""Time-to-target runs: steps, tokens, training seconds, wall seconds and full-split val loss per seed.

    python benchmarks/speedrun.py --preset cpu-speedrun            # 3 seeds, then the median
    python benchmarks/speedrun.py --preset speedrun --seeds 1 2 3  # on a GPU
    python benchmarks/speedrun.py --track 60s --nanogpt ~/src/nanoGPT   # CPU track, beside nanoGPT's recipe
    python benchmarks/speedrun.py --track 10min --members 2 --set max_iters=1800 --set lr_decay_iters=1800 \
        --set warmdown_iters=720                                    # an ensemble of two shorter runs

CPU tracks (``--track``): ``60s`` is ``cpu-speedrun`` to a full val loss <= 1.65 within 60 s of wall
time; ``10min`` is ``cpu-10min`` to <= 1.55 within 600 s; each row says whether it made both, and the
median of the seeds is the track's result. With ``--nanogpt DIR`` every seed also runs nanoGPT's own
CPU recipe for the same wall budget (benchmarks/nanogpt_cpu.py) in a fresh process. With ``--members K``
each seed's process trains K runs back to back (seeds seed, seed + 1000, ...; benchmarks/ensemble.py) and
its loss is their ensemble's.

Each seed runs in a fresh Python process, so "wall s" counts everything from the interpreter's start
to the final score: imports, reading the corpus, compiling, evaluations and the final exact val loss
over every token of the validation split. "train s" is the time inside the training loop minus the
periodic evaluations; a run that compiles or records a CUDA graph first takes REHEARSAL_STEPS
throwaway steps that ``Trainer.rehearse`` undoes, outside "train s" (as modded-nanogpt times its
speedrun) but inside "wall s". After the table, each seed's wall time is split into its phases: importing
torch and tinylm, reading the data, the device's context, building the model and its trainer, compiling
or recording, evaluations, training, the final score, and what is left (the interpreter's start).
"cpu s" is the child's user+system CPU time: on a shared, loaded machine it shows what the run costs
when wall time is inflated by other processes.
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

from machine import speed_and_load

# Throwaway steps before the clock when a run compiles or records a CUDA graph: the graph's eager
# warmup (3 steps), the recording and one replay. Trainer.rehearse undoes them; "wall s" still counts them.
REHEARSAL_STEPS = 5


def child(preset: str, seed: int, overrides: list[str], members: int = 1) -> None:
    """One run (or ``members`` runs and their ensemble) inside this process; prints one JSON line."""
    if members > 1:
        return print(json.dumps(ensemble_child(preset, seed, overrides, members)))
    importing = time.perf_counter()
    import torch

    from tinylm.config import load_config
    from tinylm.device import resolve_device
    from tinylm.evaluate import exact_loss
    from tinylm.training.run import build_trainer, prepare_corpus

    began = time.perf_counter()
    cfg = load_config(preset=preset, overrides=overrides + [f"seed={seed}"])
    corpus = prepare_corpus(cfg)
    read = time.perf_counter()
    torch.zeros(1, device=resolve_device(cfg.train.device)).item()  # the device's context, apart from the model
    device_ready = time.perf_counter()
    trainer = build_trainer(cfg, corpus, None, progress=False, log=lambda _: None)
    ready = time.perf_counter()
    if cfg.train.compile or trainer.graphed is not None:  # compile and record on throwaway steps, before the clock
        trainer.rehearse(REHEARSAL_STEPS)
    start = time.perf_counter()
    trainer.train()
    trained = time.perf_counter()
    val_loss = exact_loss(trainer.model, corpus.val_data)
    phases = {"imports_s": began - importing, "data_s": read - began, "device_s": device_ready - read,
              "build_s": ready - device_ready, "warmup_s": start - ready, "eval_s": trainer.eval_seconds,
              "score_s": time.perf_counter() - trained}
    print(json.dumps({"seed": seed, "steps": trainer.step, "tokens": trainer.step * trainer.tokens_per_step,
                      "train_s": trained - start - trainer.eval_seconds,  # evaluations are not training
                      "val_loss": val_loss, "phases": phases,
                      "graph_replayed": trainer.graphed is not None and trainer.graphed.graph is not None}))


def ensemble_child(preset: str, seed: int, overrides: list[str], members: int) -> dict:
    """Members seeded ``seed``, ``seed + 1000``, ... trained back to back; the loss is their ensemble's."""
    from ensemble import train_members

    trained = list(train_members(preset, overrides, count=members, first_seed=seed))
    return {"seed": seed, "steps": sum(m.steps for m in trained), "tokens": sum(m.tokens for m in trained),
            "train_s": trained[-1].train_s_so_far, "val_loss": trained[-1].ensemble_loss,
            "member_losses": [m.val_loss for m in trained]}


def run_seed(preset: str, seed: int, overrides: list[str], timeout: float | None = None, members: int = 1) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--preset", preset, "--seeds", str(seed),
           "--members", str(members)]
    done = subprocess.run(cmd + [arg for item in overrides for arg in ("--set", item)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:  # say why: its last stderr line, not just the exit status
        last = (done.stderr.strip().splitlines() or ["no stderr"])[-1]
        raise RuntimeError(f"{preset} seed {seed} exited {done.returncode}: {last}")
    out = done.stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall, "cpu_s": cpu}


# CPU tracks (issue 15): preset, full-val-loss target, wall-clock budget in seconds from process start.
TRACKS = {"60s": ("cpu-speedrun", 1.65, 60.0), "10min": ("cpu-10min", 1.55, 600.0)}
COLUMNS = ("steps", "tokens", "train_s", "wall_s", "cpu_s", "val_loss")


def run_nanogpt(checkout: str, seed: int, budget_s: float) -> dict:
    """nanoGPT's CPU recipe in a fresh process for the same budget (benchmarks/nanogpt_cpu.py)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nanogpt_cpu.py")
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run([sys.executable, script, "--checkout", checkout, "--seed", str(seed),
                          "--budget-s", str(budget_s)], capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": time.perf_counter() - start, "cpu_s": cpu}


def print_row(label: str, row: dict, target: float | None, budget: float | None) -> None:
    verdict = ""
    if target is not None:
        verdict = f" {'yes' if row['val_loss'] <= target else 'no'} | {'yes' if row['wall_s'] <= budget else 'no'} |"
    print(f"| {label} | {row['steps']:,.0f} | {row['tokens']:,.0f} | {row['train_s']:.1f} | {row['wall_s']:.1f} | "
          f"{row['cpu_s']:.1f} | {row['val_loss']:.4f} |{verdict}", flush=True)


def phase_line(row: dict) -> str:
    """Where a seed's wall time went; "outside" is the interpreter's start and the pipes to this process."""
    inside = sum(row["phases"].values()) + row["train_s"]
    parts = ", ".join(f"{name[:-2]} {value:.1f} s" for name, value in row["phases"].items())
    graph = "; steps replayed as a CUDA graph" if row["graph_replayed"] else ""
    return f"{parts}, train {row['train_s']:.1f} s, outside {row['wall_s'] - inside:.1f} s{graph}"


def median_row(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in COLUMNS}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu-speedrun")
    p.add_argument("--track", choices=sorted(TRACKS), help="a CPU track: its preset, target and wall budget")
    p.add_argument("--nanogpt", metavar="DIR", help="a nanoGPT checkout: its CPU recipe runs each seed too")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2])
    p.add_argument("--members", type=int, default=1,
                   help="train this many runs per seed back to back and score their ensemble (benchmarks/ensemble.py)")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.preset, args.seeds[0], args.set, args.members)
    preset, target, budget = TRACKS[args.track] if args.track else (args.preset, None, None)
    ensemble = f"; an ensemble of {args.members} runs per seed" if args.members > 1 else ""
    print(f"preset {preset} {' '.join(args.set)}{ensemble}; at start: {speed_and_load()}")
    if target is not None:
        print(f"track {args.track}: full val loss <= {target} within {budget:.0f} s of wall time, median of seeds")
    extra = (" <= target | in budget |", " --- | --- |") if target is not None else ("", "")
    print(f"| seed | steps | tokens | train s | wall s | cpu s | full val loss |{extra[0]}")
    print(f"| --- | --- | --- | --- | --- | --- | --- |{extra[1]}")
    rows, nano_rows = [], []
    for seed in args.seeds:
        rows.append(run_seed(preset, seed, args.set, members=args.members))
        print_row(str(seed), rows[-1], target, budget)
        if args.nanogpt:
            nano_rows.append(run_nanogpt(args.nanogpt, seed, budget or 60.0))
            print_row(f"nanoGPT {seed}", nano_rows[-1], target, budget or 60.0)
    print_row("median", median_row(rows), target, budget)
    if nano_rows:
        print_row("nanoGPT median", median_row(nano_rows), target, budget or 60.0)
    for row in rows:
        if "phases" in row:
            print(f"seed {row['seed']}: {phase_line(row)}")
        if "member_losses" in row:
            print(f"members of seed {row['seed']}: full val loss {' / '.join(f'{x:.4f}' for x in row['member_losses'])}")
    print(f"at the end: {speed_and_load()}")


if __name__ == "__main__":
    main()
