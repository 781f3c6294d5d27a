"""Which config learns most in a fixed time? Train a preset plus overrides for as many steps as fit a
budget of training seconds, then score the full val split. One JSON line per run.

    python benchmarks/budget.py --seconds 42 --set n_layer=2 --set n_embed=80
    python benchmarks/budget.py --steps 600 --set muon_momentum=0.9      # a fixed step count instead
    python benchmarks/budget.py --seconds 42 --warmdown-frac 0.4 --set n_layer=3

The step count comes from timing 4 steps of a throwaway copy of the model (after 2 warm-up steps), so
a run on a busier machine gets fewer steps: compare rows measured back to back on a quiet machine.
``--warmdown-frac`` sets ``warmdown_iters`` to that fraction of the steps (a warmup-stable-decay
schedule). Without it only ``max_iters`` and ``lr_decay_iters`` follow the step count: the preset's
``warmup_iters`` and ``warmdown_iters`` stay as they are, in steps (the rows in RESULTS.md were
measured so), which for a short budget is a larger share of the run.
This is how `cpu-speedrun` was chosen (benchmarks/RESULTS.md); its own 60 s test is speedrun.py.
"""

from __future__ import annotations

import argparse
import json
import time

from tinylm.config import load_config
from tinylm.evaluate import exact_loss
from tinylm.training.run import build_trainer, prepare_corpus


def seconds_per_step(preset: str, overrides: list[str], corpus) -> float:
    cfg = load_config(preset=preset, overrides=overrides)
    trainer = build_trainer(cfg, corpus, None, progress=False, log=lambda _: None)
    trainer.run_steps(2)
    start = time.perf_counter()
    trainer.run_steps(4)
    return (time.perf_counter() - start) / 4


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu-speedrun")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--seconds", type=float, help="training seconds to fill")
    budget.add_argument("--steps", type=int, help="train exactly this many steps")
    p.add_argument("--warmdown-frac", type=float, help="warmdown_iters as a fraction of the steps")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    args = p.parse_args(argv)
    corpus = prepare_corpus(load_config(preset=args.preset, overrides=args.set))
    step_s = seconds_per_step(args.preset, args.set, corpus)
    steps = args.steps or int(args.seconds / step_s)
    schedule = [f"max_iters={steps}", f"lr_decay_iters={steps}"]
    if args.warmdown_frac is not None:
        schedule.append(f"warmdown_iters={int(args.warmdown_frac * steps)}")
    cfg = load_config(preset=args.preset, overrides=args.set + schedule)
    trainer = build_trainer(cfg, corpus, None, progress=False, log=lambda _: None)
    start = time.perf_counter()
    trainer.run_steps(steps)  # the Trainer's loop without its evaluations
    train_s = time.perf_counter() - start
    val_loss = exact_loss(trainer.model, corpus.val_data)
    print(json.dumps({"preset": args.preset, "set": args.set, "warmdown_frac": args.warmdown_frac,
                      "step_ms": round(step_s * 1000, 1), "steps": steps,
                      "tokens": steps * trainer.tokens_per_step,
                      "train_s": round(train_s, 1), "val_loss": round(val_loss, 4)}))


if __name__ == "__main__":
    main()
