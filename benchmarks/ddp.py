"""Training throughput (tokens/s) of DDP on 1 and 2 ranks, each job a real torchrun run.

    python benchmarks/ddp.py                      # cpu-small model on CPU: 1 rank, 2 ranks (same and double global batch)
    python benchmarks/ddp.py --device cuda --nproc 1 2 4 --steps 50

Each worker builds the trainer exactly as ``tinylm train`` does (``tinylm.training.run.build_trainer``) on
random tokens (speed does not depend on the text), runs a few warm-up steps, then times ``--steps``
optimizer steps with ``--threads`` OpenMP threads per rank (1, as torchrun sets for several ranks:
on a busy machine two threads per process can be many times slower); tokens/s counts the global batch (batch_size x block_size x grad_accum x ranks).
Prints one markdown row per job, with the load average, for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import torch

RESULT_TAG = "DDP_RESULT "


def worker(args: argparse.Namespace) -> None:
    from tinylm.config import load_config
    from tinylm.data.tokenizer import CharTokenizer
    from tinylm.training.distributed import init_from_env
    from tinylm.training.run import Corpus, build_trainer

    cfg = load_config(preset=args.preset, overrides=[f"device={args.device}", f"batch_size={args.batch}",
                                                     "eval_interval=1000000", "dtype=auto"])
    dist = init_from_env(cfg.train.device)
    tokenizer = CharTokenizer.from_text("".join(chr(32 + i) for i in range(65)))
    tokens = torch.randint(0, 65, (200_000,), generator=torch.Generator().manual_seed(0))
    trainer = build_trainer(cfg, Corpus(tokenizer, tokens, tokens[:10_000]), None, progress=False, dist=dist)
    trainer.run_steps(args.warmup)
    trainer.sync_losses()  # a collective: all ranks are past warm-up and in step here
    began = time.perf_counter()
    trainer.run_steps(args.steps)
    trainer.sync_losses()  # waits for the last step's results
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    world = dist.world_size if dist else 1
    global_batch = cfg.train.batch_size * cfg.train.grad_accum_steps * world
    if dist is None or dist.is_main():
        print(RESULT_TAG + json.dumps({"ranks": world, "batch": cfg.train.batch_size, "global_batch": global_batch,
                                       "threads": torch.get_num_threads(), "device": str(trainer.device),
                                       "tokens_per_s": global_batch * cfg.model.block_size * args.steps / seconds}))
    if dist is not None:
        dist.cleanup()


def run_job(nproc: int, batch: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           __file__, "--worker", "--preset", args.preset, "--device", args.device, "--batch", str(batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}  # the same threads per rank in every job
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith(RESULT_TAG))[len(RESULT_TAG):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=12, help="per-rank batch of the 1-rank job")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads per rank (torchrun's default)")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print("| date | benchmark | ranks x batch/rank (global) | threads/rank | tokens/s | vs 1 rank | load (1/5/15 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    baseline = None
    for nproc in args.nproc:
        # Same global batch (split across ranks), then the same per-rank batch (global grows with ranks).
        for batch in sorted({max(1, args.batch // nproc), args.batch}):
            result = run_job(nproc, batch, args)
            baseline = baseline or result["tokens_per_s"]
            load = "/".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"| {date} | ddp {args.preset} {result['device']} | {nproc} x {batch} ({result['global_batch']}) "
                  f"| {result['threads']} | {result['tokens_per_s']:,.0f} | {result['tokens_per_s'] / baseline:.2f}x "
                  f"| {load} |", flush=True)


if __name__ == "__main__":
    main()
