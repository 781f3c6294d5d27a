"""The ``tinylm`` command line (also ``python -m tinylm``).

    tinylm train --preset attention-1 --out runs/a1
    tinylm train --config-json '{"max_iters": 200}' --set n_layer=2 --device cpu
    tinylm sample --run runs/a1 --prompt "ROMEO:" --max-new-tokens 200 --top-k 10
    tinylm eval --run runs/a1

User errors (bad config, missing run, unseen characters, ...) print one line and exit with code 2.
Other subcommands live in their own modules, listed in ``COMMAND_MODULES``; each has a
``register(subparsers)`` that adds its parser and sets ``handler``.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path

import torch

from tinylm.checkpoint import load_run, unwrap
from tinylm.config import load_config
from tinylm.device import resolve_device
from tinylm.errors import TinyLMError
from tinylm.presets import PRESETS
from tinylm.sample_cli import extend_sample_parser

COMMAND_MODULES: list[str] = ["tinylm.cloud.cli", "tinylm.plots_cli", "tinylm.serve"]  # modules with register(subparsers)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that make a RunConfig; shared by ``train`` and other commands that launch training."""
    parser.add_argument("--preset", help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--config", metavar="FILE", help="a JSON or TOML config file")
    parser.add_argument("--config-json", metavar="JSON", help="a config as a JSON object string")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key; repeatable")
    parser.add_argument("--data", metavar="PATH", help="a UTF-8 text file (default: Tiny Shakespeare)")
    parser.add_argument("--device", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--seed", type=int, help="random seed (default: 1337)")


def config_from_args(args: argparse.Namespace):
    overrides = list(args.overrides)
    for key in ("data", "device", "seed"):
        if getattr(args, key, None) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    return load_config(args.preset, args.config, args.config_json, overrides), overrides


def cmd_train(args: argparse.Namespace) -> int:
    from tinylm import distributed
    from tinylm.run import resumed_config, train_run

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
    if dist is not None and not dist.is_main():
        return 0
    trainer = result.trainer
    val_loss = trainer.evaluator.exact_loss(result.corpus.val_data)
    print(f"val perplexity (full split): {math.exp(val_loss):.3f} (loss {val_loss:.4f})")
    print(f"run saved in {run_dir}")
    if args.sample_chars:
        start = torch.zeros((1, 1), dtype=torch.long, device=trainer.device)
        out = unwrap(trainer.model).generate(start, max_new_tokens=args.sample_chars)
        print("---\n" + result.corpus.tokenizer.decode(out[0, 1:].tolist()))
    return 0


def _check_sample_args(args: argparse.Namespace) -> None:
    if args.max_new_tokens < 0:
        raise TinyLMError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise TinyLMError(f"--temperature must be >= 0 (0 means greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise TinyLMError(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise TinyLMError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.num_samples < 1:
        raise TinyLMError(f"--num-samples must be >= 1, got {args.num_samples}")


def cmd_eval(args: argparse.Namespace) -> int:
    from tinylm.evaluate import Evaluator
    from tinylm.run import prepare_corpus
    from tinylm.data import BatchLoader

    device = resolve_device(args.device)
    model, tokenizer, cfg, ckpt = load_run(args.run, device)
    if args.data:
        cfg.train.data = args.data
    corpus = prepare_corpus(cfg, tokenizer)
    loaders = [BatchLoader(d, cfg.model.block_size, 1) for d in (corpus.train_data, corpus.val_data)]
    evaluator = Evaluator(model, *loaders, tokenizer.vocab_size, dtype=cfg.train.dtype)
    for name, data in (("val", corpus.val_data), ("train", corpus.train_data)):
        loss = evaluator.exact_loss(data)
        print(f"{name} perplexity: {math.exp(loss):.3f} (loss {loss:.4f}, {len(data) - 1:,} tokens, step {ckpt['step']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylm", description="Train, sample and evaluate character-level language models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model (or --resume one)", description="Train a model.")
    add_config_arguments(train)
    train.add_argument("--out", metavar="DIR", help="run directory (default: runs/PRESET)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--sample-chars", type=int, default=300, metavar="N", help="characters to sample at the end (0: none)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--nproc", type=int, metavar="N", help="train on N processes (DDP): runs torchrun for you")
    train.set_defaults(handler=cmd_train)

    sample = sub.add_parser("sample", help="generate text from a trained run", description="Generate text.")
    sample.add_argument("--run", required=True, metavar="DIR", help="a run directory with a checkpoint")
    sample.add_argument("--prompt", default="", help="text to continue (default: empty context)")
    sample.add_argument("--max-new-tokens", type=int, default=500, metavar="N")
    sample.add_argument("--temperature", type=float, default=1.0, metavar="T", help="0 means greedy")
    sample.add_argument("--top-k", type=int, metavar="K")
    sample.add_argument("--top-p", type=float, metavar="P")
    sample.add_argument("--num-samples", type=int, default=1, metavar="N")
    sample.add_argument("--seed", type=int, default=1337)
    sample.add_argument("--device", default="auto")
    extend_sample_parser(sample)  # --stream, --prompt-file, --stop, -i and the handler: sample_cli.py

    evaluate = sub.add_parser("eval", help="exact train and val perplexity of a run", description="Score every token.")
    evaluate.add_argument("--run", required=True, metavar="DIR")
    evaluate.add_argument("--data", metavar="PATH", help="the text the run was trained on, if not the default")
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(handler=cmd_eval)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `train --nproc` hands to torchrun
    try:
        return args.handler(args)
    except TinyLMError as exc:
        print(f"tinylm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinylm: interrupted; the last checkpoint is intact (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
