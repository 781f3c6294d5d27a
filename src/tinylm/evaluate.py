"""Perplexity: exp(mean cross-entropy), the number of characters the model is "choosing between".

    evaluator = Evaluator(model, train_loader, val_loader, vocab_size, eval_iters=200)
    evaluator.estimate()            # {"train_loss", "val_loss", "train_perplexity", "val_perplexity"}
    evaluator.exact_loss(val_data)  # every token of the split scored once: the number for tables

``estimate`` averages ``eval_iters`` random batches of each split. It draws them with its own
generator, reseeded each call, so every evaluation sees the same batches (smooth curves) and the
training batches are untouched (a resumed run sees the same training data as an unbroken one).
A uniform guess over V characters has perplexity V: ``vocab_size`` is kept to report that baseline.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.nn import functional as F

from tinylm.data import BatchLoader
from tinylm.device import autocast, model_device


class Evaluator:
    def __init__(self, model: torch.nn.Module, train_loader: BatchLoader, val_loader: BatchLoader,
                 vocab_size: int | None = None, eval_iters: int = 200, seed: int = 0, dtype: str = "auto",
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.model, self.vocab_size, self.eval_iters, self.seed = model, vocab_size, eval_iters, seed
        self.reduce = reduce  # under DDP: the mean over ranks (each rank scores batches of its own seed)
        self.device = model_device(model)
        self.loaders = {"train": train_loader.to(self.device), "val": val_loader.to(self.device)}
        self.dtype = dtype

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over ``eval_iters`` random batches of each split."""
        was_training = self.model.training
        self.model.eval()
        means = {}
        for split, loader in self.loaders.items():
            generator = torch.Generator(device=loader.device).manual_seed(self.seed)
            total = torch.zeros((), device=self.device)
            for _ in range(self.eval_iters):
                x, y = loader.get_batch(generator)
                with autocast(self.device, self.dtype):
                    _, loss = self.model(x, y)
                total += loss.float()  # stays on the device: one host sync per split, below
            if self.reduce is not None:
                total = self.reduce(total)
            means[split] = total.item() / self.eval_iters
        self.model.train(was_training)
        return means

    def estimate(self) -> dict[str, float]:
        losses = self.estimate_loss()
        return {
            "train_loss": losses["train"], "val_loss": losses["val"],
            "train_perplexity": math.exp(losses["train"]), "val_perplexity": math.exp(losses["val"]),
        }

    @torch.no_grad()
    def exact_loss(self, data: torch.Tensor, block_size: int | None = None, batch_size: int = 64) -> float:
        """Mean cross-entropy over every token of ``data`` but the first.

        The split is cut into consecutive windows of ``block_size`` targets; inside a window the
        model sees 1..block_size characters of context. A last, shorter remainder is scored with a
        full window that ends at the split's end, counting only its new targets.
        """
        T = block_size or self.model.block_size
        data = data.to(self.device)
        n_targets = len(data) - 1
        starts = torch.arange(0, n_targets - T + 1, T, device=self.device)  # full windows
        total = self._summed_loss(data, starts, T, batch_size, keep_last=T)
        remainder = n_targets - len(starts) * T
        if remainder:
            tail = torch.tensor([n_targets - T], device=self.device)
            total += self._summed_loss(data, tail, T, batch_size, keep_last=remainder)
        return total.item() / n_targets

    def _summed_loss(self, data, starts, T, batch_size, keep_last) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        offsets = torch.arange(T + 1, device=self.device)
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        for chunk in starts.split(batch_size):
            windows = data[chunk[:, None] + offsets]  # (B, T+1)
            x, y = windows[:, :-1], windows[:, 1:]  # (B, T) each
            with autocast(self.device, self.dtype):
                logits, _ = self.model(x)  # (B, T, V)
            logits, y = logits[:, -keep_last:].float(), y[:, -keep_last:]
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        self.model.train(was_training)
        return total

    def exact_perplexity(self, data: torch.Tensor, block_size: int | None = None) -> float:
        return math.exp(self.exact_loss(data, block_size))
