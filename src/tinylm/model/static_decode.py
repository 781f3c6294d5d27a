"""A compiled one-token decode step: batch-1 sampling on the CPU without ~800 small calls per token.

    cache = model.new_kv_cache(batch_size=1)
    logits, _ = model(prompt_ids, cache=cache)       # prefill: the ordinary (eager) cached forward
    step = CompiledDecoder(model, cache)
    logits = step(next_id)                           # (B, 1) -> (B, V); the cache grows by one position

Why: with the eager cache, one token of a nanogpt-char-sized model costs ~800 ATen calls (~0.4 ms on
the 2-core CPU VM) plus 25 one-row products that MKL runs at about half the memory bandwidth of a
plain read (~1.7 ms; benchmarks/RESULTS.md). torch.compile fuses the small calls, and a one-row
product written as ``(W * x).sum(-1)`` becomes one vectorised pass over the weights.

How: torch.compile traces a function once per set of shapes, so every step must have the same
shapes. The step takes its position as a 0-dim tensor, writes the new key and value at that index
of the preallocated cache inside the graph, and attends over all ``max_len`` slots with a mask that
hides the slots after the position. Past block_size a rope cache rolls by one position every step;
that is a second graph (``_roll_by_one``, equal to the eager roll to the bit). Prefill, and the
learned-position cache's refills, stay eager.

The logits equal the eager ones to ~1e-6, not to the bit: the fused reductions add in another
order. The sampled tokens are the same in the tests (greedy and seeded, tests/test_static_decode.py).
On CUDA the step also runs as a CUDA graph (``compiled_step``): on an H200, batch 1, 2,400-2,750
tokens/s against ~520-550 compiled without it (benchmarks/RESULTS.md).

The first step compiles (7-10 s for a nanogpt-char-sized model on the 2-core CPU VM, less when torch's
on-disk cache holds the graph); later steps, caches and models of the same shapes reuse the graph.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

from tinylm.errors import TinyLMError
from tinylm.model.kv_cache import KVCache, LayerKV
from tinylm.model.rope import apply_rotary


class StaticLayerKV:
    """One layer's cache as a compiled step sees it: the full buffers and the position as a tensor."""

    def __init__(self, layer: LayerKV, position: torch.Tensor):
        self.k, self.v = layer.k, layer.v  # (B, H, max_len, hs): the same storage as the eager cache
        self.length = position  # 0-dim long tensor: where the new token goes

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store the new key/value (B, H, 1, hs) at ``length``; the query (B, H, 1, hs) attends over slots <= it."""
        where = self.length.view(1)  # (1,)
        self.k.index_copy_(2, where, k)
        self.v.index_copy_(2, where, v)
        slots = torch.arange(self.k.size(2), device=q.device)  # (max_len,)
        scores = q @ self.k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, 1, hs) @ (B, H, hs, max_len)
        weights = F.softmax(scores.masked_fill(slots > self.length, float("-inf")), dim=-1)  # later slots: 0
        return weights @ self.v  # (B, H, 1, max_len) @ (B, H, max_len, hs) -> (B, H, 1, hs)

    def rotate(self, x: torch.Tensor, rotary: nn.Module) -> torch.Tensor:
        """Queries/keys x (B, H, 2, 1, hs) rotated for the slot at ``length``."""
        return rotary(x, self.length)

    @staticmethod
    def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """``layer(x)``; one row on the CPU as ``(W * x).sum(-1)``, which compiles to one pass over W."""
        if x.device.type != "cpu" or x.shape[:-1].numel() != 1:
            return layer(x)
        y = (layer.weight * x.reshape(1, -1)).sum(-1)  # (out, in) * (1, in) -> (out,)
        if layer.bias is not None:
            y = y + layer.bias
        return y.view(*x.shape[:-1], -1)  # (B, T, out) with B = T = 1


def _step(model: nn.Module, idx: torch.Tensor, layers: list[StaticLayerKV]) -> torch.Tensor:
    return model.decode(idx, layers)[:, -1]  # (B, 1) -> (B, V)


# Inductor folds a pointwise input (layer norm, GELU) into the reduction that reads it unless it costs
# more than this many operations: inside a one-row product that means recomputing GELU's erf for
# every row of the weight. 4 stores such inputs once: batch-1 sampling of a nanogpt-char-sized model
# ran at 315 tokens/s with the default (50) and 524-538 with 4 (one thread, 2-core CPU VM).
COMPILE_OPTIONS = {"realize_cpu_opcount_threshold": 4}


def compile_fixed_shapes(fn, options: dict | None = None):
    """``torch.compile`` for one graph per set of shapes, with those ``options`` this torch knows
    (older releases lack some; the pyproject allows torch >= 2.3)."""
    import torch._inductor.config as inductor_config

    known = {key: value for key, value in (options or {}).items() if hasattr(inductor_config, key)}
    return torch.compile(fn, dynamic=False, fullgraph=True, options=known or None)


@functools.cache
def compiled_step(device_type: str = "cpu"):
    """The compiled ``_step``, made on first use; torch.compile keeps one graph per model and shapes.

    On CUDA a batch-1 step is ~100 tiny kernels, bound by launching them: there the graph is also
    captured as a CUDA graph (mode="reduce-overhead") and each token is one replay.
    """
    if device_type == "cuda":
        return torch.compile(_step, mode="reduce-overhead", dynamic=False, fullgraph=True)
    return compile_fixed_shapes(_step, COMPILE_OPTIONS)


def _roll_by_one(keys: list[torch.Tensor], values: list[torch.Tensor], cos: torch.Tensor, sin: torch.Tensor) -> None:
    """LayerKV.drop_oldest(1) for every layer of a full cache: keys (B, H, max_len, hs) move one slot
    down and rotate one position back (sin(-a) = -sin(a)); values only move."""
    for k, v in zip(keys, values):
        k[:, :, :-1] = apply_rotary(k[:, :, 1:], cos, -sin)
        v[:, :, :-1] = v[:, :, 1:].clone()


@functools.cache
def compiled_roll():
    return compile_fixed_shapes(_roll_by_one)


def run_compiled(compiled, *args):
    """``compiled(*args)``; a compiler that cannot run (no C++ compiler, ...) becomes one TinyLMError line."""
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.exc import InductorError

    try:
        return compiled(*args)
    except (BackendCompilerFailed, InductorError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise TinyLMError(f"torch.compile could not build the decode step ({reason}); "
                          "sample without compiling (no --compile)") from None


class CompiledDecoder:
    """Runs one-token steps of ``model`` against ``cache`` (a ``KVCache`` of the model) through one graph."""

    def __init__(self, model: nn.Module, cache: KVCache):
        if cache.slack:
            raise ValueError("a compiled step writes at fixed slots: give it a cache made without slack")
        self.model, self.cache = model, cache
        device = cache.layers[0].k.device
        self.position = torch.zeros((), dtype=torch.long, device=device)
        # The step reads its token from here: a slice of the caller's sequence has strides that
        # change with its length, and torch.compile would trace again for each new stride.
        self.token = torch.zeros((cache.layers[0].k.size(0), 1), dtype=torch.long, device=device)  # (B, 1)
        self.layers = [StaticLayerKV(layer, self.position) for layer in cache.layers]
        self.cuda_graphs = device.type == "cuda"
        if self.cuda_graphs:  # a CUDA graph replays fixed addresses: the step's inputs stay where they are
            for tensor in (self.position, self.token, *(t for layer in cache.layers for t in (layer.k, layer.v))):
                torch._dynamo.mark_static_address(tensor)
        if cache.rotary is not None:  # past block_size a rope cache rolls every step: one graph for that too
            cache.roll_full_by_one = self.roll_full_by_one
            # Compile it now, on copies, so that a stream pauses before its first token, not at block_size.
            self._roll([layer.k.clone() for layer in cache.layers], [layer.v.clone() for layer in cache.layers])

    def _roll(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        rotary = self.cache.rotary
        run_compiled(compiled_roll(), keys, values, rotary.cos[1:2], rotary.sin[1:2])  # (1, hs): one position's angle

    def roll_full_by_one(self) -> None:
        self._roll([layer.k for layer in self.cache.layers], [layer.v for layer in self.cache.layers])
        for layer in self.cache.layers:
            layer.length -= 1

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) of the token after ``idx`` (B, 1), the token right after the cached ones."""
        if idx.size(1) != 1 or self.cache.length >= self.cache.max_len:
            raise ValueError(f"a compiled step takes one token into a cache with room; got {idx.size(1)} "
                             f"tokens with {self.cache.length} of {self.cache.max_len} positions filled")
        self.position.fill_(self.cache.length)
        self.token.copy_(idx)
        logits = run_compiled(compiled_step(self.token.device.type), self.model, self.token, self.layers)
        for layer in self.cache.layers:
            layer.length += 1
        return logits.clone() if self.cuda_graphs else logits  # the next replay overwrites a graph's output
