"""Time the plain textbook training loop against tinylm's fast path, side by side in one process.

    python benchmarks/speed.py                          # cpu-small on whatever device it finds
    python benchmarks/speed.py --preset nanogpt-char --iters 100 --compile on   # on a GPU
    python benchmarks/speed.py --nanogpt ~/src/nanoGPT   # add a row for nanoGPT itself

Rows: ``textbook`` (benchmarks/textbook.py: per-row Python batches, eager fp32, one module per head
with an explicit mask and softmax, default AdamW), ``tinylm eager`` (our Trainer, fp32, no compile,
PyTorch's default thread count: the nanoGPT-equivalent path) and ``tinylm fast`` (our Trainer with
the fast-path settings: bf16 autocast where the device has it, fused AdamW, torch.compile when
``--compile`` says so, and on CPU ``--fast-threads`` threads). With ``--nanogpt DIR`` (a checkout of
karpathy/nanoGPT; none of its code is part of tinylm) a ``nanoGPT`` row imports that checkout's
``model.py`` and steps its ``GPT`` the way its ``train.py`` does on a CPU: per-row batches from a
uint16 memmap, its ``configure_optimizers``, clipping, ``loss.item()`` every step. All rows run the
same config and hyperparameters; timings are interleaved in chunks (A B C A B C ...) so a change in
the load of a shared machine hits every row alike, and each row's ms/iter is the median over its chunks.
MFU counts 6N + 12·L·d·T FLOPs per token against the card's bf16 peak (known for H100 only).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from tinylm.config import RunConfig, load_config
from tinylm.device import resolve_device
from tinylm.training.run import build_trainer, prepare_corpus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textbook import TextbookGPT, textbook_step  # noqa: E402  (a sibling file, not a package)

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak, SXM cards


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--iters", type=int, default=60, help="timed iterations per row")
    p.add_argument("--chunk", type=int, default=10, help="iterations per interleaved chunk")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations per row (compile happens here)")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the fast row; auto = on for CUDA, off for CPU (compile there costs minutes)")
    p.add_argument("--fast-threads", type=int, default=0,
                   help="torch CPU threads for the fast row on CPU (0 = torch's default; 1 wins on a loaded machine)")
    p.add_argument("--nanogpt", metavar="DIR", help="a karpathy/nanoGPT checkout to time beside us")
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    return p.parse_args(argv)


def flops_per_token(n_params: int, cfg: RunConfig) -> float:
    m = cfg.model
    return 6 * n_params + 12 * m.n_layer * m.n_embed * m.block_size


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def textbook_runner(cfg: RunConfig, corpus, device: torch.device) -> Callable[[], object]:
    m, t = cfg.model, cfg.train
    torch.manual_seed(t.seed)
    model = TextbookGPT(corpus.tokenizer.vocab_size, m.n_embed, m.block_size, m.n_layer, m.n_heads).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, betas=(t.beta1, t.beta2),
                                  weight_decay=t.weight_decay)
    data = corpus.train_data  # stays on the host: the textbook loop copies each batch over
    return lambda: textbook_step(model, optimizer, data, m.block_size, t.batch_size, t.grad_clip, device)


def nanogpt_runner(checkout: str, cfg: RunConfig, corpus, device: torch.device) -> Callable[[], object]:
    """One step of nanoGPT's train.py (grad accumulation 1) with its own model.

    On a CPU: fp32, no compile, ``loss.item()`` every step (its README's CPU command). On CUDA: its
    train.py defaults, bf16 autocast where supported, torch.compile, ``loss.item()`` every 10 steps.
    """
    sys.path.insert(0, os.path.abspath(os.path.expanduser(checkout)))
    from model import GPT, GPTConfig  # nanoGPT's model.py, from the checkout

    m, t = cfg.model, cfg.train
    torch.manual_seed(t.seed)
    model = GPT(GPTConfig(block_size=m.block_size, vocab_size=corpus.tokenizer.vocab_size, n_layer=m.n_layer,
                          n_head=m.n_heads, n_embd=m.n_embed, dropout=m.dropout, bias=m.bias)).to(device)
    optimizer = model.configure_optimizers(t.weight_decay, t.learning_rate, (t.beta1, t.beta2), device.type)
    on_gpu = device.type == "cuda"
    amp = torch.autocast("cuda", torch.bfloat16) if on_gpu and torch.cuda.is_bf16_supported() else None
    forward = torch.compile(model) if on_gpu else model  # train.py compiles after making the optimizer
    bin_path = os.path.join(tempfile.mkdtemp(prefix="nanogpt-"), "train.bin")
    corpus.train_data.numpy().astype(np.uint16).tofile(bin_path)

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        data = np.memmap(bin_path, dtype=np.uint16, mode="r")  # reopened per batch, as train.py does
        ix = torch.randint(len(data) - m.block_size, (t.batch_size,))
        x = torch.stack([torch.from_numpy(data[i:i + m.block_size].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + m.block_size].astype(np.int64)) for i in ix])
        return x.to(device), y.to(device)

    batch, steps = [get_batch()], [0]

    def step() -> float | None:
        with amp or contextlib.nullcontext():
            _, loss = forward(*batch[0])
        batch[0] = get_batch()  # train.py fetches the next batch while the GPU would be busy
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps[0] += 1
        # log_interval=1 in nanoGPT's CPU command; 10 in its train_shakespeare_char config (GPU)
        return loss.item() if not on_gpu or steps[0] % 10 == 0 else None

    return step


def tinylm_runner(cfg: RunConfig, corpus) -> tuple[Callable[[], object], int]:
    trainer = build_trainer(cfg, corpus, None, progress=False, log=lambda _: None)
    trainer.model.train()
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return trainer.train_step, n_params


def time_rows(runners: dict[str, tuple[Callable, int]], args, device: torch.device) -> dict[str, float]:
    """Median ms/iter per row over interleaved chunks, after an untimed warmup of each row.

    ``runners`` maps a row name to (step function, CPU thread count for that row).
    """
    for run, threads in runners.values():
        torch.set_num_threads(threads)
        for _ in range(args.warmup):
            run()
    synchronize(device)
    chunk_ms: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(1, args.iters // args.chunk)):
        for name, (run, threads) in runners.items():
            torch.set_num_threads(threads)
            start = time.perf_counter()
            for _ in range(args.chunk):
                run()
            synchronize(device)
            chunk_ms[name].append((time.perf_counter() - start) * 1000 / args.chunk)
    return {name: statistics.median(ms) for name, ms in chunk_ms.items()}


def print_table(cfg: RunConfig, args, device: torch.device, ms: dict[str, float], n_params: int) -> None:
    tokens = cfg.train.batch_size * cfg.model.block_size
    peak = peak_flops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print("| config | device | path | ms/iter | tokens/s | MFU | speedup |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row, value in ms.items():
        rate = tokens / (value / 1000)
        mfu = f"{100 * rate * flops_per_token(n_params, cfg) / peak:.1f}%" if peak else "n/a"
        print(f"| {args.preset} | {name} | {row} | {value:.1f} | {rate:,.0f} | {mfu} | "
              f"{ms['textbook'] / value:.2f}x |")


def main(argv=None) -> None:
    args = parse_args(argv)
    default_threads = torch.get_num_threads()
    cfg = load_config(preset=args.preset, overrides=args.set + ["threads=0"])
    device = resolve_device(cfg.train.device)
    use_compile = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    fast_threads = (args.fast_threads or default_threads) if device.type == "cpu" else default_threads
    corpus = prepare_corpus(cfg)
    eager_cfg = load_config(preset=args.preset, overrides=args.set + ["compile=false", "dtype=float32", "threads=0"])
    fast_cfg = load_config(preset=args.preset, overrides=args.set + [f"compile={use_compile}", "threads=0"])
    eager, n_params = tinylm_runner(eager_cfg, corpus)
    fast, _ = tinylm_runner(fast_cfg, corpus)
    fast_name = f"tinylm fast ({'compiled, ' if use_compile else ''}{fast_threads} thread{'s' * (fast_threads > 1)})"
    runners = {"textbook": (textbook_runner(cfg, corpus, device), default_threads)}
    if args.nanogpt:
        runners["nanoGPT"] = (nanogpt_runner(args.nanogpt, eager_cfg, corpus, device), default_threads)
    eager_name = f"tinylm eager ({default_threads} thread{'s' * (default_threads > 1)})"
    runners |= {eager_name: (eager, default_threads), fast_name: (fast, fast_threads)}
    ms = time_rows(runners, args, device)
    print_table(cfg, args, device, ms, n_params)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
