"""``tinylm eval --run DIR``: exact train and val perplexity (per token) and bits per byte of a run.

``tinylm eval --ensemble DIR DIR ...`` scores the mean of several runs' next-token probabilities.
"""

from __future__ import annotations

import argparse
import math

from tinylm.cli.common import add_model_arguments, load_model


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("eval", help="exact train and val perplexity (and bits per byte) of a run",
                                     description="Score every token of each split, up to --max-tokens "
                                                 "(default 1,000,000; 0: all).")
    add_model_arguments(evaluate, "score")
    evaluate.add_argument("--data", metavar="PATH",
                          help="the text (or prepared directory) the run was trained on, if not the default")
    evaluate.add_argument("--max-tokens", type=int, default=1_000_000, metavar="N",
                          help="score at most the first N tokens of each split (default: 1,000,000; 0: all of them)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    evaluate.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from tinylm.device import resolve_device
    from tinylm.evaluate import score_split
    from tinylm.training.run import prepare_corpus

    model, tokenizer, cfg, ckpt = load_model(args, resolve_device(args.device))
    if args.data:
        cfg.train.data = args.data
    corpus = prepare_corpus(cfg, tokenizer)
    table = tokenizer.token_bytes()  # (V,) UTF-8 bytes per token
    for name, data in (("val", corpus.val_data), ("train", corpus.train_data)):
        score = score_split(model, data, table, cfg.train.dtype, max(args.max_tokens, 0))
        bpb = f", {score.bits_per_byte:.4f} bits per byte" if score.bits_per_byte is not None else ""
        print(f"{name} perplexity: {math.exp(score.loss):.3f} (loss {score.loss:.4f}, {score.targets:,} tokens, "
              f"step {ckpt.get('step', 0)}){bpb}{score.note}")
    return 0
