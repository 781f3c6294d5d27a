"""Generation speed without the key/value cache, with it, and with compiled steps, side by side in one process.

    python benchmarks/generate.py                          # nanogpt-char size, 1000 new tokens, batch 1 and 16
    python benchmarks/generate.py --batch 1 --new-tokens 255 --positions learned
    python benchmarks/generate.py --batch 1 --threads 1 --check-tokens   # also: do the three give the same tokens?

The model is ``nanogpt-char``-sized (6 layers, 6 heads, n_embed 384, block 256) with random weights:
speed does not depend on what the weights learned. ``learned`` is the notebook's position table (the
cache stays exact, so once the window slides each step refills it: no gain past block_size);
``rope`` uses rotary embeddings, whose cache rolls. "compiled" is ``generate(..., compiled=True)``
(tinylm.model.static_decode); "compile s" is its first call of 8 tokens, which traces and compiles
(seconds; less when torch's on-disk cache already holds the graph). Prints one markdown row per setting.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from tinylm import TransformerLanguageModel
from tinylm.device import resolve_device
from tinylm.sampling import generate

NANOGPT_CHAR_SIZE = {"n_embed": 384, "block_size": 256, "n_layer": 6, "n_heads": 6}


def build(positions: str, device: torch.device, **size) -> TransformerLanguageModel:
    """A random-init model, nanogpt-char-sized unless ``size`` says otherwise (n_embed=..., ...)."""
    torch.manual_seed(0)
    model = TransformerLanguageModel(65, **{**NANOGPT_CHAR_SIZE, **size}, rope=positions == "rope")
    return model.to(device).eval()


def timed(device: torch.device, run) -> tuple[float, torch.Tensor]:
    """Seconds that ``run()`` took (waiting for the GPU), and what it returned."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began, out


def tokens_per_second(model, batch: int, new_tokens: int, device: torch.device, **how) -> tuple[float, float, list]:
    """(tokens/s, seconds of the warm-up call, greedy token ids) of ``generate(..., **how)``."""
    start = torch.zeros((batch, 1), dtype=torch.long, device=device)
    warm_s, _ = timed(device, lambda: generate(model, start, 8, **how))  # allocator, kernels; compiling
    seconds, out = timed(device, lambda: generate(model, start, new_tokens, temperature=0, **how))
    return batch * new_tokens / seconds, warm_s, out.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=1000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--positions", nargs="+", default=["learned", "rope"], choices=["learned", "rope"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--machine", default="2-core CPU VM", help="the machine's name in the rows (CPU runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--check-tokens", action="store_true",
                        help="fill the column: greedy tokens of the cache = the loop's? compiled = the cache's?")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else args.machine
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| date | machine | positions | batch | new tokens | no cache tok/s | cache tok/s | speedup | "
          "compiled tok/s | compiled / cache | compile s | same tokens: cache, compiled | load (1/5/15 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for positions in args.positions:
        model = build(positions, device)
        for batch in args.batch:
            plain, _, plain_ids = tokens_per_second(model, batch, args.new_tokens, device, use_cache=False)
            cached, _, cached_ids = tokens_per_second(model, batch, args.new_tokens, device)
            fast, compile_s, fast_ids = tokens_per_second(model, batch, args.new_tokens, device, compiled=True)
            same = "-"
            if args.check_tokens:  # past block_size a rope cache rolls: it may differ from the loop (kv_cache.py)
                same = ", ".join("yes" if a == b else "no" for a, b in ((cached_ids, plain_ids), (fast_ids, cached_ids)))
            date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            load = "/".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"| {date} | {machine} | {positions} | {batch} | {args.new_tokens} | {plain:,.1f} | "
                  f"{cached:,.1f} | {cached / plain:.1f}x | {fast:,.1f} | {fast / cached:.2f}x | {compile_s:.1f} | "
                  f"{same} | {load} |", flush=True)


if __name__ == "__main__":
    main()
