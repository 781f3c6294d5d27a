"""What several commands share: the options that make a RunConfig, and their reading."""

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
    parser.add_argument("--data", metavar="PATH", help="a UTF-8 text file (default: Tiny Shakespeare)")
    parser.add_argument("--device", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--seed", type=int, help="random seed (default: 1337)")


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, list[str]]:
    """The RunConfig the options describe, and the ``--set``-style overrides they amount to."""
    overrides = list(args.overrides)
    for key in ("data", "device", "seed"):
        if getattr(args, key, None) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    return load_config(args.preset, args.config, args.config_json, overrides), overrides
