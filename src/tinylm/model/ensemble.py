"""An ensemble of language models that predicts the mean of their next-token probabilities.

    ensemble = Ensemble([model_a, model_b])      # same vocabulary; block_size = the smallest one's
    logits, loss = ensemble(x, y)                # logits = log of the mean probability (B, T, V)

Its "logits" are log-probabilities, log(mean_i softmax(logits_i)), so softmax and cross-entropy read
them like any model's: ``exact_loss(ensemble, val_data)`` is the ensemble's exact loss. An ensemble of
a model with itself scores as the model does (up to float rounding).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Ensemble(nn.Module):
    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        vocab = {m.vocab_size for m in models}
        if len(vocab) != 1:
            raise ValueError(f"ensemble members have different vocabulary sizes: {sorted(vocab)}")
        self.members = nn.ModuleList(models)
        self.vocab_size = vocab.pop()
        self.block_size = min(m.block_size for m in models)  # every member sees the same window

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx (B, T) -> log mean probability (B, T, V) and, with targets, the mean cross-entropy."""
        log_probs = torch.stack([F.log_softmax(m(idx)[0].float(), dim=-1) for m in self.members])  # (M, B, T, V)
        logits = torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss
