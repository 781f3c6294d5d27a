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
    """Approximate polar factor of a (rows, cols) matrix, or of each matrix in an (N, rows, cols)
    stack: U S V^T -> U S' V^T with S' ~ 1."""
    a, b, c = NEWTON_SCHULZ_COEFFS
    x = update.to(dtype)
    single = x.dim() == 2
    if single:
        x = x.unsqueeze(0)  # (1, rows, cols): one code path for a matrix and a stack
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the wide orientation: X X^T is then the smaller (rows, rows) Gram matrix
        x = x.mT
    # Frobenius norm >= spectral norm, so all singular values are <= 1
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)
    for _ in range(steps):
        gram = x @ x.mT  # (N, r, r)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        x = torch.baddbmm(x, poly, x, beta=a)  # a X + (b G + c G^2) X
    x = x.mT if tall else x
    return (x.squeeze(0) if single else x).to(update.dtype)


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
            by_shape: dict[torch.Size, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for same_shape in by_shape.values():  # one batched Newton-Schulz per shape: fewer, bigger matmuls
                self._update(same_shape, group)
        return loss

    def _update(self, params: list[torch.Tensor], group: dict) -> None:
        """Update N parameters of one (rows, cols) shape together."""
        momentum = group["momentum"]
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        grads = [p.grad for p in params]
        bufs = [self.state[p]["momentum_buffer"] for p in params]  # (rows, cols) each, like p
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        updates = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        # bf16 matmuls are accurate enough for Newton-Schulz and much faster on GPUs.
        ns_dtype = torch.bfloat16 if params[0].device.type == "cuda" else torch.float32
        directions = orthogonalize(torch.stack(updates), group["ns_steps"], dtype=ns_dtype)  # (N, rows, cols)
        rows, cols = params[0].shape
        scale = max(1.0, rows / cols) ** 0.5
        lr = group["lr"]  # a float, or a 0-dim device tensor that a CUDA-graphed step reads (graph_step.py)
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        if isinstance(lr, torch.Tensor):
            torch._foreach_sub_(params, torch._foreach_mul(list(directions.unbind(0)), lr * scale))
        else:
            torch._foreach_add_(params, list(directions.unbind(0)), alpha=-lr * scale)


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
