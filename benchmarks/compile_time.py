"""How long torch.compile takes for a training step: every layer traced, against one block compiled once.

    python benchmarks/compile_time.py                       # the speedrun preset on whatever device it finds
    python benchmarks/compile_time.py --set n_layer=2 --steps 3   # smaller and quicker

``Block.forward_sequence`` is a nested compile region (``torch.compiler.nested_compile_region``):
torch.compile traces one block and stamps its code out for every layer. The ``every layer`` row runs
a model whose blocks override that method with the same two lines, unmarked, so the compiler traces
all ``n_layer`` of them, as it did before. Each row runs in a fresh process with an empty inductor
cache and reports the first forward + backward (where compiling happens), the steady step time after
it, and the loss after ``--steps`` steps on the same batch (the two should agree).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def child(overrides: list[str], traced_per_layer: bool, steps: int) -> dict:
    import torch

    from tinylm.config import load_config
    from tinylm.device import autocast, resolve_device
    from tinylm.model import build_model
    from tinylm.model.gpt import Block

    class EveryLayerBlock(Block):
        def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:  # the same two lines, not a region
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    cfg = load_config(preset="speedrun", overrides=overrides)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(0)
    model = build_model(cfg.model, 65)
    if traced_per_layer:
        for block in model.blocks:
            block.__class__ = EveryLayerBlock
    model = torch.compile(model.to(device))
    x, y = (torch.randint(0, 65, (cfg.train.batch_size, cfg.model.block_size), device=device) for _ in range(2))
    timings = []
    for _ in range(steps):
        start = time.perf_counter()
        with autocast(device, cfg.train.dtype):
            _, loss = model(x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        loss_value = loss.item()  # waits for the device
        timings.append(time.perf_counter() - start)
    steady = sorted(timings[1:])[len(timings[1:]) // 2] if steps > 1 else float("nan")
    return {"first_s": timings[0], "steady_ms": 1000 * steady, "loss": loss_value, "device": str(device)}


def run(overrides: list[str], traced_per_layer: bool, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:  # a cold cache: compile from scratch
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--steps", str(steps)]
        cmd += ["--every-layer"] if traced_per_layer else []
        cmd += [arg for item in overrides for arg in ("--set", item)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no stderr"])[-1]
        raise SystemExit(f"compile_time: the child exited {done.returncode}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="forward + backward steps per row (the first compiles)")
    p.add_argument("--set", action="append", default=[], help="config override of the speedrun preset, key=value")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--every-layer", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return print(json.dumps(child(args.set, args.every_layer, args.steps)))
    rows = {"every layer traced": run(args.set, True, args.steps), "one block, reused": run(args.set, False, args.steps)}
    print(f"speedrun {' '.join(args.set)} on {rows['one block, reused']['device']}, {args.steps} steps, cold cache")
    print("| compiled | first step s | steady ms | loss |")
    print("| --- | --- | --- | --- |")
    for name, row in rows.items():
        print(f"| {name} | {row['first_s']:.1f} | {row['steady_ms']:.1f} | {row['loss']:.4f} |")
    slow, fast = rows["every layer traced"]["first_s"], rows["one block, reused"]["first_s"]
    print(f"first step: {slow / fast:.2f}x faster with the block compiled once")


if __name__ == "__main__":
    main()
