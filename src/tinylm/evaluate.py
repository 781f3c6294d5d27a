"""Scoring a model: a quick estimate from random batches, and the exact loss over a whole split.

    losses = estimate_loss(model, {"train": train_loader, "val": val_loader}, eval_iters=200)
    val_loss = exact_loss(model, val_data)     # every token of the split scored once: the table number
    log_p = target_log_probs(model, val_data)  # (N,) each target's log-probability: -log_p.mean() is val_loss
    evaluator = Evaluator(model, train_loader, val_loader)   # what the Trainer calls at each evaluation
    evaluator.estimate()   # {"train_loss", "val_loss", "train_perplexity", "val_perplexity"}

Perplexity is exp(mean cross-entropy): the number of characters the model is "choosing between".
``estimate_loss`` draws its batches with its own generator, reseeded each call, so every evaluation
sees the same batches (smooth curves) and the training batches are untouched (a resumed run sees the
same training data as an unbroken one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from tinylm.data import BatchLoader
from tinylm.data.loader import ShardWindows
from tinylm.device import autocast, model_device
from tinylm.model import eval_mode

Reduce = Callable[[torch.Tensor], torch.Tensor]


def eager_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module under ``torch.compile``'s wrapper (the same weights), or ``model`` itself.

    Scoring runs eagerly: evaluation (no grad, eval mode, other batch shapes) would compile graphs of its
    own, each costing seconds on a CPU or GPU, while a run spends a small share of its time scoring.
    """
    return getattr(model, "_orig_mod", model)


# On a GPU, batches joined into one forward, up to these sizes: the compiled `speedrun` on an H100 spent
# 7.1 s in 800-900 eager forwards of 64 x 256 tokens (~40 TFLOP/s of a 989 TFLOP/s card: small kernels
# launched one by one), and 6 batches in one forward score the same windows with 1/6 of the kernel
# launches (the saving there is unmeasured). Not on a CPU: there joining did not pay (as fast, 10%
# slower, or 2x slower when 64 batches outgrew the caches; benchmarks/RESULTS.md).
EVAL_TOKENS_PER_FORWARD = {"cuda": 1 << 17}
EVAL_LOGITS_PER_FORWARD = 1 << 26


def batches_per_forward(model: torch.nn.Module, loader, device: torch.device) -> int:
    """How many of ``loader``'s batches one scoring forward may take: 1 on a CPU; on a GPU within the
    token and logits budgets above, and no more than the model has layers. A training step keeps every
    layer's activations for its backward, a no-grad forward one layer's at a time, so n_layer batches
    fit in the memory training already takes."""
    inner = getattr(model, "module", model)  # under a DDP wrapper too
    tokens = loader.batch_size * loader.block_size
    budget = EVAL_TOKENS_PER_FORWARD.get(device.type, tokens) // tokens
    logits = EVAL_LOGITS_PER_FORWARD // (tokens * getattr(inner, "vocab_size", EVAL_LOGITS_PER_FORWARD))
    return max(1, min(budget, logits, len(getattr(inner, "blocks", ()))))


def joined_batches(loader, generator: torch.Generator, count: int, per_forward: int):
    """``count`` batches of ``loader``, drawn one by one as before (the same windows), yielded as
    (n, x, y) with up to ``per_forward`` batches joined along the batch axis: x and y (n * B, T)."""
    for first in range(0, count, per_forward):
        batches = [loader.get_batch(generator) for _ in range(min(per_forward, count - first))]
        if len(batches) == 1:
            yield 1, *batches[0]
        else:
            yield len(batches), torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, loaders: dict[str, BatchLoader], eval_iters: int = 200,
                  seed: int = 0, dtype: str = "auto", reduce: Reduce | None = None) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each named split.

    ``reduce`` (under DDP: the mean over ranks, each rank scoring batches of its own seed) combines
    the per-rank sums.
    """
    model, device = eager_module(model), model_device(model)
    means = {}
    with eval_mode(model):
        for split, loader in loaders.items():
            generator = torch.Generator(device=loader.device).manual_seed(seed)
            total = torch.zeros((), device=device)
            per_forward = batches_per_forward(model, loader, device)
            for count, x, y in joined_batches(loader, generator, eval_iters, per_forward):
                with autocast(device, dtype):
                    _, loss = model(x, y)  # the mean over ``count`` batches of equal size
                total += loss.float() * count  # stays on the device: one host sync per split, below
            if reduce is not None:
                total = reduce(total)
            means[split] = total.item() / eval_iters
    return means


@torch.no_grad()
def exact_loss(model: torch.nn.Module, data: torch.Tensor | np.ndarray, block_size: int | None = None,
               batch_size: int = 64, dtype: str = "auto") -> float:
    """Mean cross-entropy over every token of ``data`` but the first.

    The split is cut into consecutive windows of ``block_size`` targets; inside a window the model
    sees 1..block_size tokens of context. A last, shorter remainder is scored with a full window
    that ends at the split's end, counting only its new targets. ``data`` may be a memory-mapped
    shard (``tinylm prepare``): only the windows of one batch are read at a time.
    """
    model = eager_module(model)
    total = torch.zeros((), device=model_device(model), dtype=torch.float64)
    with eval_mode(model):
        for logits, y in _scored_windows(model, data, block_size or model.block_size, batch_size, dtype):
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
    return total.item() / (len(data) - 1)


@torch.no_grad()
def target_log_probs(model: torch.nn.Module, data: torch.Tensor | np.ndarray, block_size: int | None = None,
                     batch_size: int = 64, dtype: str = "auto") -> torch.Tensor:
    """(len(data) - 1,) float32: the log-probability of each target, in ``exact_loss``'s windows.

    Minus their mean is ``exact_loss``. An ensemble's probability of a target is the mean of its
    members', so these vectors score any ensemble of the models without running them again.
    """
    model = eager_module(model)
    with eval_mode(model):
        return torch.cat([-F.cross_entropy(logits.transpose(1, 2), y, reduction="none").flatten()
                          for logits, y in _scored_windows(model, data, block_size or model.block_size,
                                                           batch_size, dtype)])


def _scored_windows(model, data, T: int, batch_size: int, dtype: str):
    """Yields (logits (B, t, V) float32, targets (B, t)) that cover every target of ``data`` once."""
    device = model_device(model)
    n_targets = len(data) - 1
    if n_targets < 1:
        raise ValueError(f"scoring needs at least 2 tokens (a context and a target), got {len(data)}")
    T = min(T, n_targets)  # a split shorter than a window is one window: the remainder's start must not wrap
    windows = _window_reader(model, data, T, device)
    starts = torch.arange(0, n_targets - T + 1, T)  # full windows
    remainder = n_targets - len(starts) * T
    pieces = [(starts, T)] + ([(torch.tensor([n_targets - T]), remainder)] if remainder else [])
    for piece_starts, keep_last in pieces:  # keep_last: the targets of each window not scored before
        for chunk in piece_starts.split(batch_size):
            batch = windows(chunk)  # (B, T+1)
            x, y = batch[:, :-1], batch[:, 1:]  # (B, T) each
            with autocast(device, dtype):
                logits, _ = model(x)  # (B, T, V)
            yield logits[:, -keep_last:].float(), y[:, -keep_last:]


def _window_reader(model: torch.nn.Module, data: torch.Tensor | np.ndarray, T: int, device: torch.device):
    """starts (N,) -> the windows data[s : s + T + 1] as an (N, T+1) int64 tensor on ``device``."""
    if isinstance(data, np.ndarray):  # a shard: read and checked a batch at a time (data/loader.py)
        read = ShardWindows(data, T + 1, getattr(model, "vocab_size", None))
        return lambda starts: torch.from_numpy(read(starts.numpy()).astype(np.int64)).to(device)
    data = data.to(device)
    offsets = torch.arange(T + 1, device=device)
    return lambda starts: data[starts.to(device)[:, None] + offsets]


SCORED_TOKENS = 1_000_000  # the end-of-run exact loss scores at most this many tokens of a split


def scored_part(data: torch.Tensor | np.ndarray, max_tokens: int = SCORED_TOKENS) -> tuple[object, str]:
    """The first ``max_tokens`` targets of a split (all if 0), and a note saying so when it was cut.

    Tiny Shakespeare's val split (111,540 tokens) is scored whole; a 2 GB corpus's 200 M val tokens
    would take hours on a CPU, so its exact loss covers a prefix and says how much.
    """
    if not max_tokens or len(data) <= max_tokens + 1:
        return data, ""
    return data[:max_tokens + 1], f" (first {max_tokens:,} of {len(data) - 1:,} tokens)"


def utf8_bytes(ids: torch.Tensor | np.ndarray, token_bytes: np.ndarray, chunk: int = 1 << 22) -> int:
    """UTF-8 bytes the token ids stand for (``token_bytes``: (V,) per id), summed a chunk at a time."""
    ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else ids
    return sum(int(token_bytes[ids[i:i + chunk]].sum()) for i in range(0, len(ids), chunk))


@dataclass
class SplitScore:
    loss: float  # exact mean cross-entropy of the scored targets
    targets: int
    bits_per_byte: float | None  # None when the tokens stand for no bytes
    note: str  # says so when only a prefix of the split was scored


def score_split(model: torch.nn.Module, data: torch.Tensor | np.ndarray, token_bytes: np.ndarray,
                dtype: str = "auto", max_tokens: int = SCORED_TOKENS) -> SplitScore:
    """The exact loss of a split (its first ``max_tokens`` targets; 0: all) and its bits per byte."""
    part, note = scored_part(data, max_tokens)
    loss = exact_loss(model, part, dtype=dtype)  # a prepared shard stays memory-mapped
    n_bytes = utf8_bytes(part[1:], token_bytes)  # the bytes of the scored targets
    bpb = bits_per_byte(loss, (len(part) - 1) / n_bytes) if n_bytes else None
    return SplitScore(loss, len(part) - 1, bpb, note)


def bits_per_byte(mean_loss: float, tokens_per_byte: float) -> float:
    """Loss summed over tokens / (ln 2 x UTF-8 bytes of the text): comparable across tokenizers."""
    return mean_loss * tokens_per_byte / math.log(2)


def with_perplexities(losses: dict[str, float]) -> dict[str, float]:
    """{"train": l1, "val": l2} -> {"train_loss", "val_loss", "train_perplexity", "val_perplexity"}."""
    out = {f"{split}_loss": loss for split, loss in losses.items()}
    out.update({f"{split}_perplexity": math.exp(loss) for split, loss in losses.items()})
    return out


class Evaluator:
    """``estimate_loss`` bound to a model and its train/val loaders: what the Trainer calls.

    ``vocab_size`` is accepted for the notebook's call ``Evaluator(model, train, val, vocab_size)``.
    """

    def __init__(self, model: torch.nn.Module, train_loader: BatchLoader, val_loader: BatchLoader,
                 vocab_size: int | None = None, eval_iters: int = 200, seed: int = 0, dtype: str = "auto",
                 reduce: Reduce | None = None, val_tokens_per_byte: float | None = None):
        device = model_device(model)
        self.val_tokens_per_byte = val_tokens_per_byte  # set: the estimate also reads in val bits per byte
        self.model, self.eval_iters, self.seed, self.dtype, self.reduce = model, eval_iters, seed, dtype, reduce
        self.loaders = {"train": train_loader.to(device), "val": val_loader.to(device)}

    def estimate(self) -> dict[str, float]:
        losses = estimate_loss(self.model, self.loaders, self.eval_iters, self.seed, self.dtype, self.reduce)
        result = with_perplexities(losses)
        if self.val_tokens_per_byte:
            result["val_bpb"] = bits_per_byte(losses["val"], self.val_tokens_per_byte)
        return result
