"""Perplexity is compression: tinylm's coder against gzip, bzip2, xz, zstd and zpaq, in bits per char.

    python benchmarks/compress.py                          # trains cpu-speedrun into runs/bench-compress first
    python benchmarks/compress.py --run runs/cpu-speedrun  # or reuses a run trained on Tiny Shakespeare

Texts: the val split of the run's corpus (its last 10%) and a second text the model never saw
(this repository's README by default). "alone" compresses the text by itself; "| train" is
size(train + text) - size(train): what the text costs a compressor that has read the training split,
as the model has. tinylm rows round-trip through decompress (checked) and give encode/decode speed.
"loss" is the model's exact val loss (``tinylm eval``) in bits per char: the size an ideal coder with
the same model would reach (with the notebook's windows, not the coder's rolling context).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSIC = {  # name -> argv that writes the compressed stdin to stdout
    "gzip -9": ["gzip", "-9", "-c"],
    "bzip2 -9": ["bzip2", "-9", "-c"],
    "xz -9e": ["xz", "-9e", "-c"],
    "zstd -19": ["zstd", "-19", "-c", "-q"],
}


def classic_size(argv: list[str], data: bytes) -> int:
    return len(subprocess.run(argv, input=data, capture_output=True, check=True).stdout)


def zpaq_size(data: bytes) -> int:
    """zpaq -m5 archives files, not streams: archive one file in a temp dir and measure the archive."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "f").write_bytes(data)
        subprocess.run(["zpaq", "a", "a.zpaq", "f", "-m5"], cwd=tmp, capture_output=True, check=True)
        return (Path(tmp) / "a.zpaq").stat().st_size


def classic_rows(text: bytes, train: bytes, n_chars: int) -> list[tuple]:
    rows = []
    tools = {name: (lambda d, a=argv: classic_size(a, d)) for name, argv in CLASSIC.items() if shutil.which(argv[0])}
    if shutil.which("zpaq"):
        tools["zpaq -m5"] = zpaq_size
    for name, size_of in tools.items():
        start = time.perf_counter()
        alone = size_of(text)
        speed = len(text) / 1024 / (time.perf_counter() - start)
        given_train = size_of(train + text) - size_of(train)
        rows.append((name, 8 * alone / n_chars, 8 * given_train / n_chars, speed, None))
    return rows


def tinylm_rows(text: bytes, model, tokenizer, args) -> list[tuple]:
    from tinylm.compress import Adapt, compress_bytes, decompress_bytes
    from tinylm.compress.header import VERSION

    rows = []
    adapt_name = f"tinylm --adapt (lr {args.adapt_lr:g}, {args.adapt_steps} step/{model.block_size})"
    variants = [("tinylm", None, VERSION), (adapt_name, Adapt(args.adapt_steps, model.block_size, args.adapt_lr), VERSION)]
    if args.format_1:
        variants.insert(1, ("tinylm, format 1 (a rope cache rolled at every character)", None, 1))
    n_chars = len(text.decode("utf-8", errors="surrogateescape"))
    for name, adapt, version in variants:
        start, cost = time.perf_counter(), {}
        blob = compress_bytes(text, model, tokenizer, args.segment, adapt, cost=cost, version=version)
        encode = len(text) / 1024 / (time.perf_counter() - start)
        start = time.perf_counter()
        assert decompress_bytes(blob, model, tokenizer) == text, "round trip failed"
        decode = len(text) / 1024 / (time.perf_counter() - start)
        rows.append((name, 8 * len(blob) / n_chars, None, encode, decode))
        overhead = 8 * len(blob) / cost["model_bits"] - 1
        rows.append((f"(ideal for {name.split(' (')[0]}: the model's -log2 p of the same symbols; coding overhead "
                     f"{100 * overhead:+.3f}%, {len(blob) - cost['model_bits'] / 8:,.0f} B with the header)",
                     cost["model_bits"] / n_chars, None, None, None))
    return rows


def trained_run(args) -> str:
    if args.run:
        return args.run
    from tinylm.config import load_config
    from tinylm.training.run import train_run

    out = Path(args.out)
    if not (out / "ckpt.pt").exists():
        start = time.perf_counter()
        train_run(load_config(preset=args.preset, overrides=args.set), out, progress=False, log=lambda _: None)
        print(f"trained {args.preset} in {time.perf_counter() - start:.0f} s -> {out}", file=sys.stderr)
    return str(out)


def table(title: str, rows: list[tuple]) -> str:
    def fmt(x, spec):
        return "" if x is None else format(x, spec)

    lines = ["", f"### {title}", "", "| coder | bits/char alone | bits/char given train | KB/s encode | KB/s decode |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {n} | {fmt(a, '.3f')} | {fmt(c, '.3f')} | {fmt(e, '.1f')} | {fmt(d, '.1f')} |"
              for n, a, c, e, d in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a run trained on --data (default: train --preset into --out)")
    p.add_argument("--preset", default="cpu-speedrun")
    p.add_argument("--set", action="append", default=[], help="config override for the training, key=value")
    p.add_argument("--out", default="runs/bench-compress")
    p.add_argument("--second", default=str(REPO / "README.md"), help="a text the model never saw")
    p.add_argument("--segment", type=int, default=4096)
    p.add_argument("--adapt-lr", type=float, default=0.1)
    p.add_argument("--adapt-steps", type=int, default=1)
    p.add_argument("--no-classic", action="store_true")
    p.add_argument("--format-1", action="store_true",
                   help="also code with format 1 (before 2026-11-26), which rolled a rope cache at every character")
    args = p.parse_args(argv)

    import torch

    from tinylm.evaluate import exact_loss
    from tinylm.training.run import prepare_corpus
    from tinylm.training.rundir import load_run

    run = trained_run(args)
    model, tokenizer, cfg, _ = load_run(run)
    corpus = prepare_corpus(cfg, tokenizer)
    n_train = len(corpus.train_data)
    text = tokenizer.decode(corpus.train_data.tolist()) + tokenizer.decode(corpus.val_data.tolist())
    train, val = text[:n_train].encode(), text[n_train:].encode()
    torch.set_num_threads(1)
    loss_bits = exact_loss(model, corpus.val_data) / math.log(2)
    print(f"run {run}; load {os.getloadavg()[0]:.2f}; val {len(val):,} bytes; torch threads 1", file=sys.stderr)
    rows = [] if args.no_classic else classic_rows(val, train, len(text) - n_train)
    rows += tinylm_rows(val, model, tokenizer, args)
    rows.append(("model's exact val loss", loss_bits, None, None, None))
    print(table(f"val split ({len(val):,} bytes)", rows))
    second = Path(args.second).read_bytes()
    n = len(second.decode("utf-8", errors="surrogateescape"))
    rows = [] if args.no_classic else classic_rows(second, train, n)
    rows += tinylm_rows(second, model, tokenizer, args)
    print(table(f"{Path(args.second).name} ({len(second):,} bytes, a text the model never saw)", rows))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)


if __name__ == "__main__":
    main()
