"""Optimizers for a run configuration.

    optimizer = make_optimizer(model, cfg.train)

AdamW, with weight decay on matrices only (embeddings and Linear weights), never on biases and
LayerNorm gains: decaying those towards zero only hurts. On CUDA the fused kernel is used.
"""

from __future__ import annotations

import torch

from tinylm.config import TrainConfig


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]  # the bigram model has no vectors at all


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    on_cuda = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
                             betas=(cfg.beta1, cfg.beta2), fused=on_cuda or None)
