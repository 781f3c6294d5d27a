"""Ensembles with a key/value cache: each member keeps its own cache and all of them hold the same
window, so the cached next-token distribution is the uncached one, past block_size too."""

import pytest
import torch

from tinylm.config import ModelConfig
from tinylm.model import build_model
from tinylm.model.ensemble import Ensemble
from tinylm.sampling import next_logits, supports_cache

V, BLOCK = 20, 8


def member(seed: int, rope: bool):
    torch.manual_seed(seed)
    return build_model(ModelConfig(n_layer=2, n_embed=16, n_heads=2, block_size=BLOCK, rope=rope), V).eval()


@torch.no_grad()
def logits_step_by_step(model, idx: torch.Tensor, cached: bool) -> torch.Tensor:
    """Next-token logits (B, steps, V) after each prefix of idx (B, steps), as coding and sampling ask."""
    cache = model.new_kv_cache(idx.size(0)) if cached else None
    return torch.stack([next_logits(model, idx[:, :t + 1], cache) for t in range(idx.size(1))], dim=1)


@pytest.mark.parametrize("ropes", [(False, False), (True, False)], ids=["learned", "mixed"])
def test_the_cached_ensemble_predicts_what_the_uncached_one_does(ropes):
    """Learned positions refill their cache as the window slides; a mix of rope and learned members
    refills every member's, so all of them keep seeing the same new tokens."""
    ensemble = Ensemble([member(seed, rope) for seed, rope in enumerate(ropes)])
    idx = torch.randint(0, V, (3, 3 * BLOCK))
    torch.testing.assert_close(logits_step_by_step(ensemble, idx, cached=True),
                               logits_step_by_step(ensemble, idx, cached=False), rtol=1e-5, atol=1e-5)


def test_rope_members_roll_their_caches_as_they_would_alone():
    a, b = member(0, True), member(1, True)
    idx = torch.randint(0, V, (2, 3 * BLOCK))
    alone = torch.stack([torch.log_softmax(logits_step_by_step(m, idx, cached=True), dim=-1) for m in (a, b)])
    mixed = torch.logsumexp(alone, dim=0) - torch.log(torch.tensor(2.0))  # log of the mean probability
    torch.testing.assert_close(logits_step_by_step(Ensemble([a, b]), idx, cached=True), mixed, rtol=1e-5, atol=1e-5)


def test_an_ensemble_with_a_bigram_member_has_no_cache():
    bigram = build_model(ModelConfig(kind="bigram"), V)
    with_bigram = Ensemble([member(0, False), bigram])
    assert supports_cache(Ensemble([member(0, False)])) and not supports_cache(with_bigram)
    idx = torch.randint(0, V, (2, 2 * BLOCK))
    assert logits_step_by_step(with_bigram, idx, cached=False).shape == (2, 2 * BLOCK, V)  # scores uncached
