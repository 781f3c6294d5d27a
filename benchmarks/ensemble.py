"""One model, or an ensemble of several trained in the same time? Train members back to back (seeds
1337, 2337, 3337, ...), then score each member and the ensemble of the first k on the full val split.

    python benchmarks/ensemble.py --preset cpu-10min --members 2           # the preset's steps each
    python benchmarks/ensemble.py --preset speedrun --seconds 290 --member-steps 800   # as many as fit

Each member runs the preset's schedule shrunk or stretched to ``--member-steps`` (warmup and warmdown
keep their share of the steps) with no early stop and an evaluation only at its start and end. With
``--seconds`` members are added while the next one, timed like the last, still fits the training
seconds. The ensemble predicts the mean of its members' next-token probabilities, as
``tinylm.model.ensemble`` does (``tinylm eval --ensemble RUN RUN ...`` scores saved runs that way).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from tinylm.config import load_config
from tinylm.evaluate import target_log_probs
from tinylm.training.run import build_trainer, prepare_corpus

SEED_STRIDE = 1000  # member i is seeded first_seed + 1000 i: the members of seeds 1 and 2 never share a seed


@dataclass
class Member:
    seed: int
    steps: int
    tokens: int  # trained on
    train_s: float  # inside the training loop, evaluations left out
    train_s_so_far: float  # this member's and every one's before it
    val_loss: float  # exact, full val split
    ensemble_loss: float  # the ensemble of this member and every one before it


def member_schedule(preset: str, overrides: list[str], steps: int) -> list[str]:
    """Overrides that fit the preset's schedule to ``steps``, with one evaluation at each end."""
    train = load_config(preset=preset, overrides=overrides).train
    share = steps / max(train.max_iters, 1)
    return [f"max_iters={steps}", f"lr_decay_iters={steps}", f"eval_interval={steps}", "target_val_loss=0",
            f"warmup_iters={round(train.warmup_iters * share)}", f"warmdown_iters={round(train.warmdown_iters * share)}"]


def train_members(preset: str, overrides: list[str], steps: int | None = None, count: int | None = None,
                  seconds: float | None = None, first_seed: int = 1337) -> Iterator[Member]:
    """Members one after another until ``count`` of them, or until the next would pass ``seconds``.

    Each member's val split is scored once, as the log-probability of every target: the ensemble's
    probability of a target is the mean of its members', so the k-member score needs no model rerun.
    """
    cfg = load_config(preset=preset, overrides=overrides)
    steps = steps or cfg.train.max_iters
    sets = overrides + member_schedule(preset, overrides, steps)
    corpus = prepare_corpus(cfg)
    mixed: torch.Tensor | None = None  # (N,) log of the summed probability each target got from the members
    k, spent = 0, 0.0
    while count is None or k < count:
        seed, k = first_seed + SEED_STRIDE * k, k + 1
        trainer = build_trainer(load_config(preset=preset, overrides=sets + [f"seed={seed}"]), corpus, None,
                                progress=False, log=lambda _: None)
        began = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - began - trainer.eval_seconds
        log_p = target_log_probs(trainer.model, corpus.val_data)  # (N,) scored eagerly, compiled or not
        mixed = log_p if mixed is None else torch.logaddexp(mixed, log_p)
        spent += train_s
        yield Member(seed, trainer.step, trainer.step * trainer.tokens_per_step, train_s, spent,
                     -log_p.double().mean().item(), math.log(k) - mixed.double().mean().item())
        if seconds is not None and spent + train_s > seconds:
            return


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu-10min")
    p.add_argument("--member-steps", type=int, help="steps per member (default: the preset's max_iters)")
    stop = p.add_mutually_exclusive_group(required=True)
    stop.add_argument("--members", type=int, help="train this many members")
    stop.add_argument("--seconds", type=float, help="add members while the next still fits these training seconds")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    args = p.parse_args(argv)
    print(f"preset {args.preset} {' '.join(args.set)}")
    print("| member | seed | steps | train s | train s, all members | member full val loss | ensemble full val loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k, member in enumerate(train_members(args.preset, args.set, args.member_steps, args.members, args.seconds), 1):
        print(f"| {k} | {member.seed} | {member.steps} | {member.train_s:.1f} | {member.train_s_so_far:.1f} | "
              f"{member.val_loss:.4f} | {member.ensemble_loss:.4f} |", flush=True)


if __name__ == "__main__":
    main()
