"""Bring-your-own-corpus numbers: prepare throughput and peak RSS, memmap vs in-memory step time, bpb.

    python benchmarks/prepare.py --what prepare --generated-mb 2000    # stdlib tree + a generated corpus
    python benchmarks/prepare.py --what train-rss --generated-mb 2000  # training RSS: 10 MB vs 2 GB corpus
    python benchmarks/prepare.py --what steps                          # cpu-small shape, both loaders
    python benchmarks/prepare.py --what bpb --iters 300                # Tiny Shakespeare: char/byte/bpe
    python benchmarks/prepare.py --smoke                               # every section at toy sizes (tests)

Prints markdown rows for benchmarks/RESULTS.md, with the load average next to every timing. Each
prepare and each training run goes in a fresh process, which reports its own wall time and peak RSS
(getrusage).
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

from machine import speed_and_load

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


TRAIN_CHILD = """
import json, resource, sys, time
from tinylm.config import load_config
from tinylm.training.run import train_run
data, steps, overrides = json.loads(sys.argv[1])
cfg = load_config(preset="cpu-small", overrides=[f"data={data}", f"max_iters={steps}", f"lr_decay_iters={steps}",
                                                 f"eval_interval={steps}", "eval_iters=2", *overrides])
began = time.perf_counter()
result = train_run(cfg, None, progress=False, log=lambda s: None)
print(json.dumps({"seconds": time.perf_counter() - began, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "train_tokens": len(result.corpus.train_data)}))
"""


def in_child(code: str, *args) -> dict:
    done = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"benchmark child failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def load() -> str:
    return speed_and_load()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def generated_corpus(path: Path, megabytes: float) -> Path:
    """A deterministic text of words drawn with a fixed seed (Zipf-like), lines of ~12 words, in ~9 MB pieces."""
    rng = np.random.default_rng(0)
    words = ["the", "of", "and", "a", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are",
             "with", "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "word", "corpus", "token",
             "model", "learns", "predicts", "next", "byte", "river", "stone", "light"]
    zipf = 1 / np.arange(1, len(words) + 1)
    # each word ends its line with probability 1/12: a word then a newline, else a word then a space
    choices = np.array([w + " " for w in words] + [w + "\n" for w in words])
    weights = np.concatenate([zipf * 11 / 12, zipf / 12])
    weights /= weights.sum()
    with open(path, "w", encoding="utf-8") as f:
        while f.tell() < megabytes * 1_000_000:
            picks = choices[rng.choice(len(choices), size=min(1_500_000, int(megabytes * 150_000) + 1), p=weights)]
            f.write("".join(picks.tolist()))
    return path


def bench_prepare(sources: list[str], name: str, kinds: list[str], sample_mb: float) -> None:
    from tinylm.data.sources import expand_sources

    size = expand_sources(sources).total_bytes
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            before = load()
            r = in_child(PREPARE_CHILD, sources, f"{tmp}/out", kind, sample_mb)
            print(f"| {now()} | 2-core CPU VM | prepare {name} ({size / 1e6:,.0f} MB) | {kind} | {r['seconds']:.1f} s | "
                  f"{size / 1e6 / r['seconds']:.1f} MB/s | {r['tokenizer']:.1f} s | {size / 1e6 / r['encode']:.1f} MB/s | "
                  f"{r['tokens']:,} | {r['rss_mb']:,.0f} MB | {before} |",
                  flush=True)


def bench_train_rss(sizes_mb: list[float], steps: int, overrides: list[str]) -> None:
    """cpu-small trained from byte-prepared generated corpora of each size: peak RSS should not follow size."""
    with tempfile.TemporaryDirectory() as tmp:
        for mb in sizes_mb:
            text = generated_corpus(Path(tmp) / f"gen{mb}.txt", mb)
            size = text.stat().st_size
            in_child(PREPARE_CHILD, [str(text)], f"{tmp}/data{mb}", "byte", 1.0)
            text.unlink()
            before = load()
            r = in_child(TRAIN_CHILD, f"{tmp}/data{mb}", steps, overrides)
            print(f"| {now()} | 2-core CPU VM | train cpu-small {steps} steps on a prepared {size / 1e6:,.0f} MB corpus (byte) | "
                  f"{r['train_tokens']:,} train tokens | {r['seconds']:.1f} s | peak RSS {r['rss_mb']:,.0f} MB | "
                  f"{before} |", flush=True)


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


def bench_bpb(iters: int, runs: list[tuple[str, int]], overrides: list[str]) -> None:
    """Tiny Shakespeare prepared several ways, one model shape and step count, exact val bits per byte."""
    from tinylm.config import load_config
    from tinylm.data import tinyshakespeare_path
    from tinylm.data.prepare import PrepareOptions, prepare
    from tinylm.evaluate import bits_per_byte, exact_loss, utf8_bytes
    from tinylm.training.run import train_run

    with tempfile.TemporaryDirectory() as tmp:
        for kind, vocab in runs:
            out = f"{tmp}/{kind}{vocab}"
            prepare([str(tinyshakespeare_path())], out, PrepareOptions(tokenizer=kind, vocab_size=vocab or 4096,
                                                                       progress=False))
            cfg = load_config(preset="cpu-small", overrides=[f"data={out}", f"max_iters={iters}",
                                                             f"lr_decay_iters={iters}", f"eval_interval={iters}",
                                                             *overrides])
            began, before = time.perf_counter(), load()
            result = train_run(cfg, None, progress=False, log=lambda s: None)
            loss = exact_loss(result.trainer.model, result.corpus.val_data)
            n_bytes = utf8_bytes(result.corpus.val_data[1:], result.corpus.tokenizer.token_bytes())
            bpb = bits_per_byte(loss, (len(result.corpus.val_data) - 1) / n_bytes)
            print(f"| {now()} | 2-core CPU VM | cpu-small, {iters} iters | {kind}{f' {vocab}' if vocab else ''} | "
                  f"{result.corpus.tokenizer.vocab_size} | {math.exp(loss):.2f} | {bpb:.3f} | "
                  f"{time.perf_counter() - began:.0f} s | {before} |", flush=True)


BPB_RUNS = [("char", 0), ("byte", 0), ("bpe", 512), ("bpe", 1024), ("bpe", 4096)]
SMOKE_MODEL = ["n_layer=1", "n_embed=32", "n_heads=2", "block_size=16", "batch_size=4", "eval_iters=1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["prepare", "train-rss", "steps", "bpb"], action="append")
    parser.add_argument("--generated-mb", type=float, default=0, help="also prepare a generated corpus of this size")
    parser.add_argument("--kinds", default="char,byte,bpe")
    parser.add_argument("--bpe-sample-mb", type=float, default=200.0)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--smoke", action="store_true", help="every section at toy sizes, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        smoke()
        return
    for what in args.what or parser.error("give --what (one or more) or --smoke"):
        if what == "prepare":
            stdlib = os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py")
            bench_prepare([stdlib], "Python stdlib *.py", args.kinds.split(","), args.bpe_sample_mb)
            if args.generated_mb:
                with tempfile.TemporaryDirectory() as tmp:
                    path = generated_corpus(Path(tmp) / "generated.txt", args.generated_mb)
                    bench_prepare([str(path)], "generated text", args.kinds.split(","), args.bpe_sample_mb)
        elif what == "train-rss":
            bench_train_rss([10, args.generated_mb or 2000], args.steps, [])
        elif what == "steps":
            bench_steps(args.steps)
        else:
            bench_bpb(args.iters, BPB_RUNS, [])


def smoke() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = generated_corpus(Path(tmp) / "generated.txt", 2)
        bench_prepare([str(path)], "generated text", ["char", "byte", "bpe"], 0.5)
    bench_train_rss([1, 3], 2, SMOKE_MODEL)
    bench_steps(10)
    bench_bpb(2, [("char", 0), ("bpe", 300)], SMOKE_MODEL)


if __name__ == "__main__":
    main()
