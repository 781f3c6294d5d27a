"""Bring-your-own-corpus numbers: prepare throughput and peak RSS, memmap vs in-memory step time, bpb.

    python benchmarks/prepare.py --what prepare --generated-mb 200     # stdlib tree + a generated corpus
    python benchmarks/prepare.py --what steps                          # cpu-small shape, both loaders
    python benchmarks/prepare.py --what bpb --iters 300                # Tiny Shakespeare: char/byte/bpe

Prints markdown rows for benchmarks/RESULTS.md, with the load average next to every timing. Each
prepare runs in a fresh process, which reports its own wall time and peak RSS (getrusage).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

PREPARE_CHILD = """
import json, resource, sys, time
from tinylm.data.prepare import PrepareOptions, prepare
sources, out, kind, sample_mb = json.loads(sys.argv[1])
began = time.perf_counter()
meta = prepare(sources, out, PrepareOptions(tokenizer=kind, vocab_size=4096, bpe_sample_mb=sample_mb, progress=False,
                                              encoding_errors="replace"))
print(json.dumps({"seconds": time.perf_counter() - began, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tokens": sum(s["tokens"] for s in meta["splits"].values()), **meta["seconds"]}))
"""


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def generated_corpus(path: Path, megabytes: int) -> Path:
    """A deterministic text of words drawn with a fixed seed (Zipf-like), written in 8 MB pieces."""
    rng = np.random.default_rng(0)
    words = np.array(["the", "of", "and", "a", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on",
                      "are", "with", "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "word",
                      "corpus", "token", "model", "learns", "predicts", "next", "byte", "river", "stone", "light"])
    weights = 1 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    with open(path, "w", encoding="utf-8") as f:
        while f.tell() < megabytes * 1_000_000:
            picks = words[rng.choice(len(words), size=1_500_000, p=weights)]
            f.write(" ".join(picks.tolist()).replace("the ", "the\n", 1000) + "\n")
    return path


def bench_prepare(sources: list[str], name: str, kinds: list[str], sample_mb: float) -> None:
    from tinylm.data.sources import expand_sources

    size = expand_sources(sources).total_bytes
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            before = load()
            args = json.dumps([sources, f"{tmp}/out", kind, sample_mb])
            done = subprocess.run([sys.executable, "-c", PREPARE_CHILD, args], capture_output=True, text=True,
                                  check=True)
            r = json.loads(done.stdout)
            print(f"| {now()} | 2-core CPU VM | prepare {name} ({size / 1e6:,.0f} MB) | {kind} | {r['seconds']:.1f} s | "
                  f"{size / 1e6 / r['seconds']:.1f} MB/s | {r['tokenizer']:.1f} s | {size / 1e6 / r['encode']:.1f} MB/s | "
                  f"{r['tokens']:,} | {r['rss_mb']:,.0f} MB | {before} |",
                  flush=True)


def bench_steps(steps: int) -> None:
    """cpu-small shape: the same tokens from a tensor (BatchLoader) and a memmapped shard, interleaved."""
    import torch

    from tinylm.config import load_config
    from tinylm.data import CharTokenizer, load_text
    from tinylm.training.run import Corpus, build_trainer

    cfg = load_config(preset="cpu-small", overrides=["eval_iters=1"])
    text = load_text()
    tok = CharTokenizer.from_text(text)
    tokens = tok.encode_array(text)
    with tempfile.TemporaryDirectory() as tmp:
        tokens.astype(np.uint16).tofile(f"{tmp}/train.bin")
        shard = np.memmap(f"{tmp}/train.bin", dtype=np.uint16, mode="r")
        val = torch.from_numpy(tokens[:10_000])
        trainers = {"in-memory": build_trainer(cfg, Corpus(tok, torch.from_numpy(tokens), val), None, progress=False),
                    "memmap": build_trainer(cfg, Corpus(tok, shard, val), None, progress=False)}
        times: dict[str, list[float]] = {k: [] for k in trainers}
        for t in trainers.values():
            t.run_steps(3)  # warm-up
        for _ in range(steps // 10):
            for name, t in trainers.items():
                began = time.perf_counter()
                t.run_steps(10)
                times[name].append((time.perf_counter() - began) / 10)
        for name, ts in times.items():
            print(f"| {now()} | 2-core CPU VM | cpu-small step, {name} loader | median {np.median(ts) * 1e3:.1f} ms "
                  f"({len(ts)} x 10 steps, interleaved) | {load()} |", flush=True)


def bench_bpb(iters: int) -> None:
    """Tiny Shakespeare prepared five ways, one model shape and step count, exact val bits per byte."""
    from tinylm.config import load_config
    from tinylm.data import tinyshakespeare_path
    from tinylm.data.prepare import PrepareOptions, prepare
    from tinylm.evaluate import bits_per_byte, exact_loss
    from tinylm.training.run import train_run

    runs = [("char", 0), ("byte", 0), ("bpe", 512), ("bpe", 1024), ("bpe", 4096)]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, vocab in runs:
            out = f"{tmp}/{kind}{vocab}"
            prepare([str(tinyshakespeare_path())], out, PrepareOptions(tokenizer=kind, vocab_size=vocab or 4096,
                                                                       progress=False))
            cfg = load_config(preset="cpu-small", overrides=[f"data={out}", f"max_iters={iters}",
                                                             f"lr_decay_iters={iters}", f"eval_interval={iters}"])
            began, before = time.perf_counter(), load()
            result = train_run(cfg, None, progress=False, log=lambda s: None)
            loss = exact_loss(result.trainer.model, result.corpus.val_data)
            table = result.corpus.tokenizer.token_bytes()
            n_bytes = int(table[result.corpus.val_data[1:].numpy()].sum())
            bpb = bits_per_byte(loss, (len(result.corpus.val_data) - 1) / n_bytes)
            print(f"| {now()} | 2-core CPU VM | cpu-small, {iters} iters | {kind}{f' {vocab}' if vocab else ''} | "
                  f"{result.corpus.tokenizer.vocab_size} | {math.exp(loss):.2f} | {bpb:.3f} | "
                  f"{time.perf_counter() - began:.0f} s | {before} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["prepare", "steps", "bpb"], required=True)
    parser.add_argument("--generated-mb", type=int, default=0, help="also prepare a generated corpus of this size")
    parser.add_argument("--kinds", default="char,byte,bpe")
    parser.add_argument("--bpe-sample-mb", type=float, default=200.0)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--iters", type=int, default=300)
    args = parser.parse_args()
    if args.what == "prepare":
        kinds = args.kinds.split(",")
        stdlib = os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py")
        bench_prepare([stdlib], "Python stdlib *.py", kinds, args.bpe_sample_mb)
        if args.generated_mb:
            with tempfile.TemporaryDirectory() as tmp:
                path = generated_corpus(Path(tmp) / "generated.txt", args.generated_mb)
                bench_prepare([str(path)], "generated text", kinds, args.bpe_sample_mb)
    elif args.what == "steps":
        bench_steps(args.steps)
    else:
        bench_bpb(args.iters)


if __name__ == "__main__":
    main()
