"""What several commands share: the options that make a RunConfig, and their reading; the model of
``--run DIR`` or of ``--ensemble DIR DIR ...``."""

from __future__ import annotations

import argparse

from tinylm.config import RunConfig, load_config
from tinylm.presets import PRESETS


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that make a RunConfig; shared by ``train`` and other commands that launch training."""
    parser.add_argument("--preset", help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--config", metavar="FILE", help="a JSON or TOML config file")
    parser.add_argument("--config-json", metavar="JSON", help="a config as a JSON object string")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set max_iters=100; repeatable")
    parser.add_argument("--data", metavar="PATH",
                        help="a UTF-8 text file or a prepared dataset directory (default: Tiny Shakespeare)")
    parser.add_argument("--device", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--seed", type=int, help="random seed (default: 1337)")


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, list[str]]:
    """The RunConfig the options describe, and the ``--set``-style overrides they amount to."""
    overrides = list(args.overrides)
    for key in ("data", "device", "seed"):
        if getattr(args, key, None) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    return load_config(args.preset, args.config, args.config_json, overrides), overrides


def add_model_arguments(parser: argparse.ArgumentParser, action: str) -> None:
    """``--run DIR`` or ``--ensemble DIR DIR ...`` (required, one of them); ``action`` ends the help text."""
    runs = parser.add_mutually_exclusive_group(required=True)
    runs.add_argument("--run", metavar="DIR")
    runs.add_argument("--ensemble", nargs="+", metavar="DIR",
                      help=f"{action} the mean of these runs' next-token probabilities (same tokenizer)")


def take_trailing_file(args: argparse.Namespace) -> None:
    """``compress --ensemble A B FILE``: nargs="+" takes every word up to the next option, FILE too, so
    a command whose FILE was left out takes the last of the ensemble's words as FILE."""
    from tinylm.errors import TinyLMError

    if args.file is None:
        if not args.ensemble or len(args.ensemble) < 2:
            raise TinyLMError(f"name the FILE to {args.command}, e.g. tinylm {args.command} --run DIR FILE")
        args.file = args.ensemble.pop()


def load_model(args: argparse.Namespace, device):
    """(model in eval mode, tokenizer, RunConfig, checkpoint) of ``--run``, or of the ``--ensemble``."""
    from tinylm.training.rundir import load_run

    return load_ensemble(args.ensemble, device) if args.ensemble else load_run(args.run, device)


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
    steps = "+".join(str(ckpt.get("step", 0)) for _, _, _, ckpt in loaded)
    return Ensemble([m for m, _, _, _ in loaded]).eval(), tokenizer, loaded[0][2], {"step": steps}
