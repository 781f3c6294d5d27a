"""torch.compile for training: the whole model, or one block compiled once and reused by every layer.

    model = compile_for_training(model, scope="blocks")   # build_trainer does this when compile=true
    logits, loss = model(x, y)    # the layers run compiled; model._orig_mod is the eager model

Why "blocks": every layer runs the same code on tensors of the same shapes, so one compiled graph
(forward and backward) serves them all, and the compiler reads one block instead of n_layer of them.
On the 2-core CPU, the first step of a 6-layer ``speedrun``-shaped model took 11.8 s compiled by block
against 19.4 s compiled whole, with the same loss and gradients and the same later steps
(benchmarks/RESULTS.md). What stays eager: embeddings, the last LayerNorm, the head and the loss.

Either way the eager model sits at ``_orig_mod``, where torch.compile's own wrapper keeps it, so
evaluation, sampling and checkpoints find it (``evaluate.eager_module``, ``rundir.unwrap``).
"""

from __future__ import annotations

import torch
from torch import nn


class CompiledBlocks(nn.Module):
    """A GPT whose blocks run through ``torch.compile``; its parameters are the eager model's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._orig_mod = model
        # A tuple, not a ModuleList: the compiled wrappers share the blocks' parameters, and the
        # state_dict must name each parameter once, under _orig_mod, as torch.compile's wrapper does.
        self.compiled_blocks = tuple(torch.compile(block) for block in model.blocks)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        return self._orig_mod(idx, targets, blocks=self.compiled_blocks)


def compile_for_training(model: nn.Module, scope: str) -> nn.Module:
    """``scope`` "model": torch.compile of the whole model; "blocks": ``CompiledBlocks``."""
    return CompiledBlocks(model) if scope == "blocks" else torch.compile(model)
