"""nanoGPT's laptop recipe, trained for a wall-clock budget and scored on the full val split (one JSON line).

    python benchmarks/nanogpt_cpu.py --checkout ~/src/nanoGPT --seed 1337 --budget-s 60

The baseline row of benchmarks/speedrun.py's CPU tracks. It imports the checkout's ``model.py`` (its
GPT, GPTConfig and configure_optimizers; none of nanoGPT's code is part of tinylm) and runs the
recipe of nanoGPT's README for a CPU, which tinylm's ``cpu-small`` preset copies field for field
(4 layers x 128, block 64, batch 12, AdamW 1e-3 with warmup 100 and cosine decay to 1e-4 over 2000
steps, clipping at 1.0, no dropout), stepping as its train.py does there: random rows, fp32,
``loss.item()`` every step. Training stops at the recipe's 2000 steps or once ``--train-frac`` of the
budget has passed since this process started, whichever is first; the rest of the budget is for the
score. The score is the mean loss of every val target in consecutive block_size windows (nanoGPT's
own forward with targets); the last partial window, fewer than block_size targets, is left out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

from tinylm.config import load_config
from tinylm.training.run import prepare_corpus

BEGAN = time.perf_counter()


def recipe_lr(step: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """Linear warmup, then a cosine from lr to min_lr at decay_iters (the schedule of nanoGPT's train.py)."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step > decay_iters:
        return min_lr
    ratio = (step - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


@torch.no_grad()
def full_val_loss(model, val: torch.Tensor, block_size: int, batch: int = 64) -> float:
    """Mean cross-entropy over every target of the full windows of ``val`` (N,)."""
    model.eval()
    starts = torch.arange(0, len(val) - block_size, block_size)
    total, count = 0.0, 0
    for chunk in starts.split(batch):
        x = torch.stack([val[s:s + block_size] for s in chunk.tolist()])  # (B, T)
        y = torch.stack([val[s + 1:s + 1 + block_size] for s in chunk.tolist()])
        _, loss = model(x, y)  # mean over B * T
        total, count = total + loss.item() * y.numel(), count + y.numel()
    return total / count


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkout", required=True, help="a karpathy/nanoGPT checkout (its model.py is imported)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--budget-s", type=float, required=True, help="wall-clock budget from process start")
    p.add_argument("--train-frac", type=float, default=0.9, help="share of the budget for training")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.abspath(os.path.expanduser(args.checkout)))
    from model import GPT, GPTConfig  # nanoGPT's model.py

    cfg = load_config(preset="cpu-small", overrides=[f"seed={args.seed}"])
    m, t = cfg.model, cfg.train
    corpus = prepare_corpus(cfg)
    torch.manual_seed(t.seed)
    model = GPT(GPTConfig(block_size=m.block_size, vocab_size=corpus.tokenizer.vocab_size, n_layer=m.n_layer,
                          n_head=m.n_heads, n_embd=m.n_embed, dropout=m.dropout, bias=m.bias))
    optimizer = model.configure_optimizers(t.weight_decay, t.learning_rate, (t.beta1, t.beta2), "cpu")
    data, step, train_began = corpus.train_data, 0, time.perf_counter()
    while step < t.max_iters and time.perf_counter() - BEGAN < args.train_frac * args.budget_s:
        for group in optimizer.param_groups:
            group["lr"] = recipe_lr(step, t.learning_rate, t.min_lr, t.warmup_iters, t.lr_decay_iters)
        ix = torch.randint(len(data) - m.block_size, (t.batch_size,)).tolist()
        x = torch.stack([data[i:i + m.block_size] for i in ix])  # (B, T)
        y = torch.stack([data[i + 1:i + 1 + m.block_size] for i in ix])
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # log_interval=1 in the README's command
        step += 1
    train_s = time.perf_counter() - train_began
    val_loss = full_val_loss(model, corpus.val_data, m.block_size)
    print(json.dumps({"seed": args.seed, "steps": step, "tokens": step * t.batch_size * m.block_size,
                      "train_s": train_s, "val_loss": val_loss}))


if __name__ == "__main__":
    main()
