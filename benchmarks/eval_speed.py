"""How long one evaluation takes with one forward per batch against batches joined into fewer forwards.

    python benchmarks/eval_speed.py --preset speedrun                 # one GPU: the joining in use there
    python benchmarks/eval_speed.py --preset cpu-10min --set device=cpu

``Evaluator.estimate()`` scores ``eval_iters`` random batches of each split. On a GPU it joins them
into forwards of up to ``--joined-tokens`` tokens (tinylm.evaluate.EVAL_TOKENS_PER_FORWARD) and at
most as many batches as the model has layers; on a CPU it does not join them. Both ways are timed
here in turn for ``--rounds`` rounds on the preset's untrained model, on whatever device the preset
resolves to, and print the same estimate (the same windows).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from tinylm import evaluate
from tinylm.config import load_config
from tinylm.training.run import build_trainer, prepare_corpus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import speed_and_load  # noqa: E402  (a sibling file, not a package)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="speedrun")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--joined-tokens", type=int, default=1 << 17, help="tokens per joined forward")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.joined_tokens < 1:
        p.error("--rounds and --joined-tokens must be at least 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(preset=args.preset, overrides=args.set)
    trainer = build_trainer(cfg, prepare_corpus(cfg), None, progress=False, log=lambda _: None)
    device = trainer.device.type
    evaluate.EVAL_TOKENS_PER_FORWARD[device] = args.joined_tokens
    per_forward = evaluate.batches_per_forward(evaluate.eager_module(trainer.model), trainer.train_loader,
                                               trainer.device)
    ways = {"one forward per batch": 1, f"joined: {per_forward} batches per forward": args.joined_tokens}
    print(f"preset {args.preset} {' '.join(args.set)}; {device}; eval_iters {cfg.train.eval_iters} per split; "
          f"at start: {speed_and_load()}")
    print("| way | seconds per evaluation (each round) | val loss estimate |\n| --- | --- | --- |")
    times: dict[str, list[float]] = {way: [] for way in ways}
    estimates: dict[str, float] = {}
    for _ in range(args.rounds):
        for way, tokens in ways.items():
            evaluate.EVAL_TOKENS_PER_FORWARD[device] = tokens
            if device == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            estimates[way] = trainer.evaluator.estimate()["val_loss"]  # ends with a host sync
            times[way].append(time.perf_counter() - began)
    for way, seconds in times.items():
        print(f"| {way} | {' / '.join(f'{s:.3f}' for s in seconds)} | {estimates[way]:.6f} |")
    print(f"at the end: {speed_and_load()}")


if __name__ == "__main__":
    main()
