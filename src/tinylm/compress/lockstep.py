"""The model's side of coding, shared by encoder and decoder so both run the very same computation.

    with eval_mode(model):                # the whole loop runs in eval mode (no dropout)
        ls = Lockstep(model, n_rows=B, n_steps=L, adapt=Adapt(steps=2, every=64, lr=0.05))
        for t in range(L):
            counts = ls.counts()        # (B, V + 1) integer frequencies of each row's next symbol
            ...code or decode one symbol per active row...
            ls.advance(tokens, n_active)  # (B,) the token ids just coded (0 stands in for an escape)

The file is cut into B rows (segments) coded side by side: one forward call per step advances every
row by one character through the key/value cache (``tinylm.sampling.next_logits`` slides the window;
rope models roll it lazily, or at every character with ``lazy_roll=False``, as format 1 files were
coded). Rows that have ended keep running with a stand-in token, so the batch shape, and with it
every float, is the same for the encoder and the decoder. Everything runs on the CPU in
fp32 with one torch thread (see ``fixed_threads``): the same inputs in the same order give the same bits.

``--adapt`` (dynamic evaluation): every ``every`` steps the model takes ``steps`` plain SGD steps on
the last block_size + 1 characters of every active row (text both sides have already coded), then
the cache is refilled with the new weights. The decoder replays the same steps on the same text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from tinylm.compress.symbols import quantize
from tinylm.sampling import next_logits, supports_cache


@dataclass
class Adapt:
    steps: int = 0  # SGD steps per adaptation; 0 means off
    every: int = 0  # characters per row between adaptations
    lr: float = 0.0


@contextlib.contextmanager
def fixed_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` torch threads (the same kernels on both sides), then restore the old count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Lockstep:
    def __init__(self, model: torch.nn.Module, n_rows: int, n_steps: int, adapt: Adapt | None = None,
                 lazy_roll: bool = True):
        self.model, self.adapt = model, adapt or Adapt()
        # The last tokens of every row, (B, W): what the window and --adapt read. Bounded, so memory
        # does not grow with the file (or with the length a hostile header claims). Column 0 holds
        # token number ``base`` of each row; token 0 is the empty context.
        self.idx = torch.zeros((n_rows, min(n_steps + 1, 2 * (model.block_size + 1))), dtype=torch.long)
        self.base = 0
        self.t = 0  # tokens coded per row so far
        # A rope cache rolls once per block_size / 4 characters (format 2), or at every one (format 1):
        # 1.25x the cache's memory for ~1/65 of the rolls with block_size 256.
        slack = max(1, model.block_size // 4) if lazy_roll else 0
        self.cache = model.new_kv_cache(n_rows, slack=slack) if supports_cache(model) else None

    @torch.no_grad()
    def counts(self) -> torch.Tensor:
        """(B, V + 1) frequencies of every row's next symbol, given the t tokens coded so far."""
        seen = self.idx[:, :self.t + 1 - self.base]  # (B, N): tokens base .. t
        logits = next_logits(self.model, seen, self.cache, offset=self.base)  # (B, V)
        probs = F.softmax(logits.float(), dim=-1)  # (B, V)
        broken = ~probs.isfinite().all(dim=-1, keepdim=True)  # (B, 1): weights --adapt drove to inf/nan
        self.probs = torch.where(broken, 1.0 / probs.size(-1), probs)  # such a row codes with a uniform table
        return quantize(self.probs)

    def advance(self, tokens: torch.Tensor, n_active: int) -> None:
        """Append the coded tokens (B,); the first ``n_active`` rows are still inside their segment."""
        self.t += 1
        if self.t - self.base == self.idx.size(1):  # full: keep the last block_size + 1 tokens
            keep = self.model.block_size + 1
            self.idx[:, :keep] = self.idx[:, -keep:].clone()
            self.base = self.t - keep
        self.idx[:, self.t - self.base] = tokens
        a = self.adapt
        if a.steps and self.t % a.every == 0 and n_active:
            self._adapt(n_active)

    def _adapt(self, n_active: int) -> None:
        """A few SGD steps on the last block_size + 1 tokens of each active row (B_a, W)."""
        first = max(0, self.t + 1 - (self.model.block_size + 1)) - self.base
        window = self.idx[:n_active, first:self.t + 1 - self.base]
        x, y = window[:, :-1], window[:, 1:]  # (B_a, W - 1) each
        params = [p for p in self.model.parameters() if p.requires_grad]
        with torch.enable_grad():
            for _ in range(self.adapt.steps):
                _, loss = self.model(x, y)
                grads = torch.autograd.grad(loss, params)
                if not loss.isfinite() or not all(g.isfinite().all() for g in grads):
                    break  # a step that diverged is skipped, by the decoder too: it computes the same numbers
                with torch.no_grad():
                    for p, g in zip(params, grads):
                        p.add_(g, alpha=-self.adapt.lr)
        if self.cache is not None:  # its keys/values came from the old weights: refill from the window
            self.cache.reset(max(0, self.t + 1 - self.model.block_size))
