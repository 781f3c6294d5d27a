"""An ensemble of language models that predicts the mean of their next-token probabilities.

    ensemble = Ensemble([model_a, model_b])      # same vocabulary; block_size = the smallest one's
    logits, loss = ensemble(x, y)                # logits = log of the mean probability (B, T, V)
    cache = ensemble.new_kv_cache(batch_size=1)  # one key/value cache per member, moved together
    logits, _ = ensemble(next_id, cache=cache)

Its "logits" are log-probabilities, log(mean_i softmax(logits_i)), so softmax and cross-entropy read
them like any model's: ``exact_loss(ensemble, val_data)`` is the ensemble's exact loss, and
``tinylm compress --ensemble`` codes with it. An ensemble of a model with itself scores as the model
does (up to float rounding). Its caches are its members' own: past block_size a rope member's cached
output may differ slightly from the uncached loop (``tinylm.model.kv_cache``), so sampled text with
and without the cache can part there, as it does for that member alone.
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

    @property
    def supports_cache(self) -> bool:
        """Whether every member has a key/value cache (a bigram table has none)."""
        return all(hasattr(m, "new_kv_cache") for m in self.members)

    def new_kv_cache(self, batch_size: int, weight_copies: bool = True, slack: int = 0) -> EnsembleCache:
        return EnsembleCache([m.new_kv_cache(batch_size, weight_copies, slack) for m in self.members])

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: EnsembleCache | None = None):
        """idx (B, T) -> log mean probability (B, T, V) and, with targets, the mean cross-entropy.

        With a cache, idx holds the tokens after the cached ones, as for one model."""
        outputs = ([m(idx, cache=c)[0] for m, c in zip(self.members, cache.caches)] if cache is not None
                   else [m(idx)[0] for m in self.members])  # a bigram member takes no cache argument
        log_probs = torch.stack([F.log_softmax(logits.float(), dim=-1) for logits in outputs])  # (M, B, T, V)
        logits = torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


class EnsembleCache:
    """The members' key/value caches, holding the same window: ``start`` and ``length`` agree.

    A rope member's cache rolls when the window slides, a learned-position member's empties; when the
    members differ, all of them empty, so that every member's next call gets the same new tokens.
    """

    def __init__(self, caches: list):
        self.caches = caches

    @property
    def start(self) -> int:
        return self.caches[0].start

    @property
    def length(self) -> int:
        return self.caches[0].length

    def reset(self, start: int = 0) -> None:
        for cache in self.caches:
            cache.reset(start)

    def slide_to(self, start: int) -> None:
        if start != self.start and any(cache.rotary is None for cache in self.caches):
            self.reset(start)
            return
        for cache in self.caches:
            cache.slide_to(start)
