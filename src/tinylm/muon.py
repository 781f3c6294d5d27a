"""Muon: momentum SGD whose update for each weight matrix is orthogonalised first.

    opt = Muon(hidden_matrices, lr=0.02, momentum=0.95)
    loss.backward(); opt.step(); opt.zero_grad()

For a 2-D weight W with gradient G, Muon keeps a momentum buffer M <- mu*M + G, takes the Nesterov
step U = G + mu*M, and replaces U by (approximately) its orthogonal polar factor: the matrix with the
same singular vectors and all singular values near 1. Every direction of the update then moves at the
same rate, instead of a few dominant directions swamping the rest, which makes small transformers
learn faster per step than AdamW. The polar factor is found with a few Newton-Schulz iterations
(matrix products only, so cheap on a GPU). Use it for hidden matrices only: embeddings, the output
head and gains/biases belong to AdamW (see ``tinylm.optim.make_optimizer``).
"""

from __future__ import annotations

import torch

from tinylm.errors import CheckpointError

# Quintic Newton-Schulz coefficients (a, b, c) of X <- a X + b (X X^T) X + c (X X^T)^2 X, chosen in
# the Muon write-up (Jordan et al., 2024) to push every singular value in (0, 1] quickly towards ~1.
NEWTON_SCHULZ_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(update: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Approximate polar factor of a (rows, cols) matrix: U S V^T -> U S' V^T with S' ~ 1."""
    a, b, c = NEWTON_SCHULZ_COEFFS
    x = update.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the wide orientation: X X^T is then the smaller (rows, rows) Gram matrix
        x = x.T
    x = x / (x.norm() + eps)  # Frobenius norm >= spectral norm, so all singular values are <= 1
    for _ in range(steps):
        gram = x @ x.T  # (r, r)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(update.dtype)


class Muon(torch.optim.Optimizer):
    """Momentum + Newton-Schulz orthogonalised updates, for 2-D parameters only.

    The step for a (rows, cols) matrix is scaled by sqrt(max(1, rows / cols)) so that tall matrices
    (like an MLP's input layer seen from its outputs) take steps of a comparable size.
    ``weight_decay`` is decoupled, as in AdamW: W <- W (1 - lr * wd).
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5):
        if lr <= 0 or not 0.0 <= momentum < 1.0:
            raise ValueError(f"Muon needs lr > 0 and momentum in [0, 1), got lr={lr}, momentum={momentum}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        ns_steps=ns_steps)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon only updates 2-D matrices, got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]  # (rows, cols), like p
        buf.mul_(group["momentum"]).add_(p.grad)
        update = p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
        # bf16 matmuls are accurate enough for Newton-Schulz and much faster on GPUs.
        ns_dtype = torch.bfloat16 if p.device.type == "cuda" else torch.float32
        direction = orthogonalize(update, group["ns_steps"], dtype=ns_dtype)
        scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
        if group["weight_decay"]:
            p.mul_(1.0 - group["lr"] * group["weight_decay"])
        p.add_(direction, alpha=-group["lr"] * scale)


class CombinedOptimizer:
    """Several optimizers over disjoint parameters, driven as one (what the Trainer needs).

    ``param_groups`` lists every group of every optimizer (the same dicts, so setting ``lr`` on them
    works); ``state_dict`` / ``load_state_dict`` round-trip all of them for checkpoints.
    """

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for opt in self.optimizers:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("optimizers", [state])  # a plain optimizer's state counts as one
        if len(saved) != len(self.optimizers):
            raise CheckpointError(f"the checkpoint holds {len(saved)} optimizer(s) but this run uses "
                                  f"{len(self.optimizers)}; resume with the run's own optimizer setting")
        for opt, opt_state in zip(self.optimizers, saved):
            opt.load_state_dict(opt_state)
