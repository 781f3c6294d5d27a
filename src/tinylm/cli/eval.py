"""``tinylm eval --run DIR``: exact train and val perplexity (per token) and bits per byte of a run.

``tinylm eval --ensemble DIR DIR ...`` scores the mean of several runs' next-token probabilities.
"""

from __future__ import annotations

import argparse
import math


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("eval", help="exact train and val perplexity (and bits per byte) of a run",
                                     description="Score every token.")
    runs = evaluate.add_mutually_exclusive_group(required=True)
    runs.add_argument("--run", metavar="DIR")
    runs.add_argument("--ensemble", nargs="+", metavar="DIR",
                      help="score the mean of these runs' next-token probabilities (same tokenizer)")
    evaluate.add_argument("--data", metavar="PATH",
                          help="the text (or prepared directory) the run was trained on, if not the default")
    evaluate.add_argument("--max-tokens", type=int, default=1_000_000, metavar="N",
                          help="score at most the first N tokens of each split (0: all of them)")
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from tinylm.device import resolve_device
    from tinylm.evaluate import score_split
    from tinylm.training.run import prepare_corpus
    from tinylm.training.rundir import load_run

    if args.ensemble:
        model, tokenizer, cfg, ckpt = load_ensemble(args.ensemble, resolve_device(args.device))
    else:
        model, tokenizer, cfg, ckpt = load_run(args.run, resolve_device(args.device))
    if args.data:
        cfg.train.data = args.data
    corpus = prepare_corpus(cfg, tokenizer)
    table = tokenizer.token_bytes()  # (V,) UTF-8 bytes per token
    for name, data in (("val", corpus.val_data), ("train", corpus.train_data)):
        score = score_split(model, data, table, cfg.train.dtype, max(args.max_tokens, 0))
        bpb = f", {score.bits_per_byte:.4f} bits per byte" if score.bits_per_byte is not None else ""
        print(f"{name} perplexity: {math.exp(score.loss):.3f} (loss {score.loss:.4f}, {score.targets:,} tokens, "
              f"step {ckpt['step']}){bpb}{score.note}")
    return 0


def load_ensemble(run_dirs: list[str], device):
    """(Ensemble of the runs' models, tokenizer, the first run's config, a checkpoint-like summary)."""
    from tinylm.errors import TinyLMError
    from tinylm.model.ensemble import Ensemble
    from tinylm.training.rundir import load_run

    loaded = [load_run(run_dir, device) for run_dir in run_dirs]
    tokenizer = loaded[0][1]
    for run_dir, (_, other, _, _) in zip(run_dirs, loaded):
        if other.to_dict() != tokenizer.to_dict():
            raise TinyLMError(f"run {run_dir} uses another tokenizer than {run_dirs[0]}; "
                              "an ensemble needs runs trained on the same text")
    steps = "+".join(str(ckpt["step"]) for _, _, _, ckpt in loaded)
    return Ensemble([m for m, _, _, _ in loaded]).eval(), tokenizer, loaded[0][2], {"step": steps}
