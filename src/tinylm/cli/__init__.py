"""The ``tinylm`` command line (also ``python -m tinylm``); the only place argv is parsed.

    tinylm train --preset attention-1 --out runs/attention-1
    tinylm sample --run runs/attention-1 --prompt "ROMEO:" --max-new-tokens 200 --top-k 10
    tinylm eval --run runs/attention-1

Each command is a module of this package with ``register(subparsers)``, which adds its parser and
sets ``handler``. User errors (bad config, missing run, unseen characters, a mistyped option) print
one line, ``tinylm: error: ...``, and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tinylm.errors import TinyLMError

COMMAND_MODULES = ["prepare", "train", "sample", "eval", "plot", "serve", "cloud", "compress", "export", "report",
                   "runs"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says how to fix it, not a usage block."""

    def error(self, message: str):
        hint = config_key_hint(message)
        print(f"{self.prog}: error: {message}{hint}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def config_key_hint(message: str) -> str:
    """For ``--max-iters 100``: point at ``--set max_iters=...``, which is how config keys are given."""
    from tinylm.config import known_keys

    if not message.startswith("unrecognized arguments:"):
        return ""
    for word in message.split(":", 1)[1].split():
        key = word.lstrip("-").split("=", 1)[0].replace("-", "_")
        if word.startswith("--") and key in known_keys():
            return f" (config keys go through --set: --set {key}=VALUE)"
    return ""


def build_parser() -> argparse.ArgumentParser:
    from tinylm import __version__

    parser = OneLineParser(prog="tinylm", description="Train, sample and evaluate character-level language models.")
    parser.add_argument("--version", action="version", version=f"tinylm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"tinylm.cli.{name}").register(sub)
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
