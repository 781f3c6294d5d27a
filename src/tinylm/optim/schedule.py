"""Learning-rate schedules: the lr of each optimizer step.

    schedule = LRSchedule(3e-3, kind="cosine", warmup_iters=100, decay_iters=5000, min_lr=3e-4)
    schedule(0), schedule(2500)      # the lr at step 0 and at step 2500

The Trainer sets ``group["lr"] = schedule(step) * group.get("lr_scale", 1.0)`` before each step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tinylm.errors import ConfigError

KINDS = ("constant", "cosine", "linear")


@dataclass
class LRSchedule:
    """Linear warmup, then constant, cosine decay or linear warmdown to ``min_lr``.

    With ``warmdown_iters`` > 0 the peak holds and the decay (linear or cosine) takes only the last
    ``warmdown_iters`` steps before ``decay_iters``: warmup-stable-decay.
    """

    learning_rate: float
    kind: str = "constant"
    warmup_iters: int = 0
    decay_iters: int = 0
    min_lr: float = 0.0
    warmdown_iters: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"schedule kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "constant" and (self.decay_iters or self.warmdown_iters or self.min_lr):
            raise ConfigError("decay_iters, warmdown_iters and min_lr do nothing with kind='constant'; "
                              "choose kind='cosine' or 'linear'")

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            return self.learning_rate * (step + 1) / self.warmup_iters
        if self.kind == "constant":
            return self.learning_rate
        decay_start = self.decay_iters - self.warmdown_iters if self.warmdown_iters else self.warmup_iters
        progress = min(1.0, max(0, step - decay_start) / max(1, self.decay_iters - decay_start))
        if self.kind == "cosine":
            weight = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
        else:
            weight = 1.0 - progress
        return self.min_lr + weight * (self.learning_rate - self.min_lr)
