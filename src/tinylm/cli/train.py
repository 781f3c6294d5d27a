"""``tinylm train``: train a model from a preset, a config file and ``--set`` keys, or ``--resume`` one.

    tinylm train --preset attention-1 --out runs/attention-1
    tinylm train --config-json '{"max_iters": 200}' --set n_layer=2 --device cpu
    tinylm train --nproc 2 --preset attention-1 --out runs/a1       # DDP: starts torchrun for you
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from tinylm.cli.common import add_config_arguments, config_from_args
from tinylm.errors import TinyLMError


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a model (or --resume one)", description="Train a model.")
    add_config_arguments(train)
    train.add_argument("--out", metavar="DIR", help="run directory (default: runs/PRESET)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--sample-chars", type=int, default=300, metavar="N",
                       help="characters to sample at the end (0: none)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--nproc", type=int, metavar="N", help="train on N processes (DDP): runs torchrun for you")
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from tinylm.device import resolve_device
    from tinylm.training import distributed
    from tinylm.training.run import resumed_config, train_run

    if args.resume:
        if args.out is None:
            raise TinyLMError("--resume needs --out DIR, the run directory to continue")
        cfg = resumed_config(args.out, config_from_args(args)[1])
    else:
        cfg = config_from_args(args)[0]
    run_dir = Path(args.out or Path("runs") / (args.preset or "custom"))
    resolve_device(cfg.train.device)  # fail on a missing GPU before reading any data
    if args.nproc is not None:  # start torchrun, which runs this same command on every rank
        return distributed.launch(args.nproc, args.argv, run_dir, args.resume)
    dist = distributed.init_from_env(cfg.train.device)  # None unless launched by torchrun
    try:
        result = train_run(cfg, run_dir, resume=args.resume, progress=not args.quiet, log=print, dist=dist)
    finally:
        if dist is not None:
            dist.cleanup()
    if dist is None or dist.is_main():
        report(result, run_dir, args.sample_chars)
    return 0


def report(result, run_dir: Path, sample_chars: int) -> None:
    """The exact val perplexity, where the run is, and a sample from the empty context."""
    from tinylm.evaluate import bits_per_byte, exact_loss
    from tinylm.sampling import generate, prompt_ids
    from tinylm.training.rundir import unwrap

    trainer = result.trainer
    val_loss = exact_loss(trainer.evaluator.model, result.corpus.val_data, dtype=trainer.dtype)  # not DDP-wrapped
    per_byte = result.corpus.val_tokens_per_byte
    bpb = f", {bits_per_byte(val_loss, per_byte):.4f} bits per byte" if per_byte else ""
    print(f"val perplexity (full split): {math.exp(val_loss):.3f} (loss {val_loss:.4f}){bpb}")
    print(f"run saved in {run_dir}")
    if sample_chars:
        start = torch.tensor([prompt_ids(result.corpus.tokenizer, "")], device=trainer.device)  # (1, 1)
        out = generate(unwrap(trainer.model), start, max_new_tokens=sample_chars)
        print("---\n" + result.corpus.tokenizer.decode(out[0, 1:].tolist()))
