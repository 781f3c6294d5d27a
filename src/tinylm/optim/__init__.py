"""Optimizers for a run configuration.

    optimizer = make_optimizer(model, cfg.train)
    schedule = LRSchedule(3e-3, kind="cosine", decay_iters=5000)   # see tinylm.optim.schedule

AdamW, with weight decay on matrices only (embeddings and Linear weights), never on biases and
LayerNorm gains: decaying those towards zero only hurts. The fused kernel runs on CUDA and CPU.

With ``optimizer="muon"`` the 2-D hidden matrices (attention and MLP weights) go to ``Muon`` at
``muon_lr`` and everything else (embeddings, output head, gains, biases) to AdamW, driven together
as one ``CombinedOptimizer``. Muon's groups carry ``lr_scale = muon_lr / learning_rate`` so the
Trainer's schedule (``group["lr"] = lr * lr_scale``) warms up and decays both alike.
"""

from __future__ import annotations

import torch

from tinylm.config import TrainConfig
from tinylm.optim.muon import CombinedOptimizer, Muon
from tinylm.optim.schedule import LRSchedule


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]  # the bigram model has no vectors at all


def hidden_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """2-D weights other than embedding tables and the output head: the ones Muon should update."""
    outer = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    head = getattr(model, "head", None)
    if head is not None:
        outer |= {id(p) for p in head.parameters()}
    return [p for p in model.parameters() if p.requires_grad and p.dim() == 2 and id(p) not in outer]


def fused_adamw(groups: list[dict], cfg: TrainConfig, device_type: str) -> torch.optim.AdamW:
    """AdamW with the fused kernel (all parameters in one kernel on CUDA, one C++ loop on CPU)."""
    kwargs = {"lr": cfg.learning_rate, "betas": (cfg.beta1, cfg.beta2)}
    if device_type in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except RuntimeError:  # torch < 2.4 has no fused CPU kernel
            pass
    return torch.optim.AdamW(groups, **kwargs)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig):
    hidden = hidden_matrices(model) if cfg.optimizer == "muon" else []
    hidden_ids = {id(p) for p in hidden}
    groups = [{**g, "params": [p for p in g["params"] if id(p) not in hidden_ids]}
              for g in parameter_groups(model, cfg.weight_decay)]
    adamw = fused_adamw([g for g in groups if g["params"]], cfg, next(model.parameters()).device.type)
    if not hidden:
        return adamw
    muon = Muon([{"params": hidden, "lr_scale": cfg.muon_lr / cfg.learning_rate}], lr=cfg.muon_lr,
                momentum=cfg.muon_momentum, weight_decay=cfg.weight_decay)
    return CombinedOptimizer(adamw, muon)  # embeddings and the head always stay with AdamW


__all__ = ["CombinedOptimizer", "LRSchedule", "Muon", "hidden_matrices", "make_optimizer"]
