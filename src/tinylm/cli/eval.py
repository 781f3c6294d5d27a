"""``tinylm eval --run DIR``: the exact train and val perplexity of a run (every token scored once)."""

from __future__ import annotations

import argparse
import math


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("eval", help="exact train and val perplexity of a run",
                                     description="Score every token.")
    evaluate.add_argument("--run", required=True, metavar="DIR")
    evaluate.add_argument("--data", metavar="PATH", help="the text the run was trained on, if not the default")
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from tinylm.device import resolve_device
    from tinylm.evaluate import exact_loss
    from tinylm.training.rundir import load_run
    from tinylm.training.run import prepare_corpus

    model, tokenizer, cfg, ckpt = load_run(args.run, resolve_device(args.device))
    if args.data:
        cfg.train.data = args.data
    corpus = prepare_corpus(cfg, tokenizer)
    for name, data in (("val", corpus.val_data), ("train", corpus.train_data)):
        loss = exact_loss(model, data, dtype=cfg.train.dtype)
        print(f"{name} perplexity: {math.exp(loss):.3f} (loss {loss:.4f}, {len(data) - 1:,} tokens, "
              f"step {ckpt['step']})")
    return 0
