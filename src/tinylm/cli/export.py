"""``tinylm export``: write a run as a Hugging Face, safetensors or ONNX directory.

    tinylm export --run runs/a1 --format hf --out exports/a1-hf
    tinylm export --run runs/a1 --format safetensors --out exports/a1      # tinylm sample --run exports/a1
    tinylm export --run runs/a1 --format onnx --out exports/a1-onnx --force
"""

from __future__ import annotations

import argparse
import contextlib
import io


def register(subparsers) -> None:
    export = subparsers.add_parser("export", help="export a run to hf, safetensors or onnx",
                                   description="Export a run for transformers, safetensors or onnxruntime.")
    export.add_argument("--run", required=True, metavar="DIR", help="a run directory with a checkpoint")
    export.add_argument("--format", required=True, choices=["hf", "safetensors", "onnx"])
    export.add_argument("--out", required=True, metavar="DIR", help="the directory to write (must not exist)")
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from tinylm.errors import TinyLMError
    from tinylm.export import export_run

    chatter = io.StringIO()  # the exporters' progress lines; shown only if the export breaks (a bug)
    try:
        with contextlib.redirect_stdout(chatter):
            out = export_run(args.run, args.format, args.out, force=args.force)
    except TinyLMError:
        raise  # the user's mistake: one line, nothing else
    except Exception:
        print(chatter.getvalue(), end="")
        raise
    print(f"exported {args.run} as {args.format} to {out}")
    return 0
