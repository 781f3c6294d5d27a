"""``tinylm compress`` and ``tinylm decompress``: a run's model drives a range coder.

    tinylm compress --run runs/cpu-speedrun val.txt              # writes val.txt.tlm
    tinylm compress --run runs/cpu-speedrun val.txt --adapt      # dynamic evaluation: SGD while coding
    tinylm decompress --run runs/cpu-speedrun val.txt.tlm -o val.out.txt
    tinylm compress --ensemble runs/a runs/b val.txt             # the mean of two runs' probabilities
    tinylm decompress --ensemble runs/a runs/b val.txt.tlm       # FILE last: the last word after --ensemble

Decompressing needs the same run, or the same runs in the same order (the weights' fingerprint is in
the header), and the same kind of CPU; another model, a damaged file or a mismatching result is one
error line, and nothing is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tinylm.cli.common import add_model_arguments, load_model, take_trailing_file
from tinylm.errors import TinyLMError

SUFFIX = ".tlm"
LAST = " (required; it may also come last, after the runs of --ensemble)"


def register(subparsers) -> None:
    comp = subparsers.add_parser("compress", help="compress a file with a run's model (arithmetic coding)",
                                 description="Code FILE with the model's next-character probabilities.")
    comp.add_argument("file", metavar="FILE", nargs="?", help=f"the file to compress{LAST}")
    add_model_arguments(comp, "code with")
    comp.add_argument("-o", "--output", metavar="FILE", help=f"default: FILE{SUFFIX}")
    comp.add_argument("--segment", type=int, default=4096, metavar="N",
                      help="characters per segment; segments are coded side by side (default 4096)")
    comp.add_argument("--adapt", action="store_true", help="dynamic evaluation: SGD on the text already coded")
    comp.add_argument("--adapt-steps", type=int, default=1, metavar="N", help="SGD steps per update (default 1)")
    comp.add_argument("--adapt-every", type=int, default=0, metavar="N",
                      help="characters per segment between updates (default: the model's block_size)")
    comp.add_argument("--adapt-lr", type=float, default=0.1, metavar="LR", help="SGD learning rate (default 0.1)")
    _add_common(comp)
    comp.set_defaults(handler=cmd_compress)
    dec = subparsers.add_parser("decompress", help="restore a file made by `tinylm compress`",
                                description="Decode FILE.tlm with the run that compressed it.")
    dec.add_argument("file", metavar="FILE.tlm", nargs="?", help=f"the file to restore{LAST}")
    add_model_arguments(dec, "decode with")
    dec.add_argument("-o", "--output", metavar="FILE", help=f"default: FILE without {SUFFIX}")
    _add_common(dec)
    dec.set_defaults(handler=cmd_decompress)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _read(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        problem = "is not a regular file (a directory, device or FIFO)" if p.exists() else "not found"
        raise TinyLMError(f"input file {p} {problem}; give a file to read")
    return p.read_bytes()


def _output(args: argparse.Namespace, default: Path | None) -> Path:
    out = Path(args.output) if args.output else default
    if out is None:
        raise TinyLMError(f"{args.file} does not end in {SUFFIX}; name the output with -o FILE")
    if out.is_dir():  # --force replaces files, never directories; refused before the slow coding
        raise TinyLMError(f"output {out} is a directory; name an output file with -o FILE")
    if out.exists() and not args.force:
        raise TinyLMError(f"{out} already exists; pass --force to overwrite it or choose another -o")
    return out


def _adapt_from(args: argparse.Namespace, block_size: int):
    from tinylm.compress import Adapt

    if not args.adapt:
        return None
    every = args.adapt_every or block_size
    if not 1 <= args.adapt_steps <= 65535 or not 1 <= every <= 65535 or not 0 < args.adapt_lr < 100:
        raise TinyLMError("--adapt-steps and --adapt-every must be in [1, 65535] and --adapt-lr in (0, 100)")
    return Adapt(args.adapt_steps, every, args.adapt_lr)


def cmd_compress(args: argparse.Namespace) -> int:
    from tinylm.atomic import atomic_write
    from tinylm.compress import compress_bytes

    take_trailing_file(args)
    if args.segment < 1:
        raise TinyLMError(f"--segment must be >= 1, got {args.segment}")
    data = _read(args.file)
    out = _output(args, Path(args.file + SUFFIX))
    model, tokenizer, _, _ = load_model(args, "cpu")
    start = time.perf_counter()
    blob = compress_bytes(data, model, tokenizer, args.segment, _adapt_from(args, model.block_size),
                          progress=not args.no_progress)
    seconds = time.perf_counter() - start
    atomic_write(out, lambda f: f.write(blob))
    bits = 8 * len(blob) / max(1, len(data))
    print(f"{args.file}: {len(data):,} -> {len(blob):,} bytes ({bits:.3f} bits per byte, "
          f"{len(data) / 1024 / max(seconds, 1e-9):.1f} KB/s) -> {out}")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from tinylm.atomic import atomic_write
    from tinylm.compress import decompress_bytes

    take_trailing_file(args)
    blob = _read(args.file)
    out = _output(args, Path(args.file[:-len(SUFFIX)]) if args.file.endswith(SUFFIX) else None)
    model, tokenizer, _, _ = load_model(args, "cpu")
    start = time.perf_counter()
    data = decompress_bytes(blob, model, tokenizer, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    atomic_write(out, lambda f: f.write(data))
    print(f"{args.file}: {len(data):,} bytes restored ({len(data) / 1024 / max(seconds, 1e-9):.1f} KB/s) -> {out}")
    return 0
