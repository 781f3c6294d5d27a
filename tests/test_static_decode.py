"""A compiled one-token step changes speed, not text: the same tokens as the eager cache, greedy and seeded.

Its logits may differ from the eager ones in the last bits (fused reductions add in another order), so
logits are compared to 1e-5 and tokens exactly. Each model shape compiles once (seconds on the CPU).
"""

import pytest
import torch

from conftest import tiny_gpt as tiny
from tinylm.model.kv_cache import LayerKV
from tinylm.model.static_decode import CompiledDecoder
from tinylm.sampling import generate

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # compiling: seconds per model shape


def test_batch_one_rope_greedy_and_seeded_tokens_match_the_eager_cache():
    """Batch 1 takes the one-row product path; 60 tokens past block_size 16 roll the rope cache."""
    model, prompt = tiny(rope=True), torch.tensor([[5, 9, 14]])
    eager = generate(model, prompt, 60, temperature=0)
    assert torch.equal(generate(model, prompt, 60, temperature=0, compiled=True), eager)
    seeded = [generate(model, prompt, 60, temperature=1.2, top_k=20, top_p=0.95, compiled=use,
                       generator=torch.Generator().manual_seed(7)) for use in (False, True)]
    assert torch.equal(*seeded)
    assert len(set(seeded[0][0, 3:].tolist())) > 5  # really sampled, not a constant


def test_batch_two_learned_positions_match_the_uncached_loop():
    """Learned positions refill the cache eagerly past block_size; the compiled steps fill it before."""
    model, prompt = tiny(), torch.tensor([[5, 9, 14], [20, 1, 33]])
    plain = generate(model, prompt, 30, temperature=0, use_cache=False)
    assert torch.equal(generate(model, prompt, 30, temperature=0, compiled=True), plain)


def test_step_logits_and_cache_contents_match_eager_steps():
    model, prompt = tiny(rope=True), torch.tensor([[3, 1, 4, 1, 5]])
    with torch.inference_mode():
        eager_cache, static_cache = model.new_kv_cache(1), model.new_kv_cache(1)
        model(prompt, cache=eager_cache)
        model(prompt, cache=static_cache)
        step = CompiledDecoder(model, static_cache)
        for token in (9, 2, 6, 5):
            idx = torch.tensor([[token]])
            eager_logits = model(idx, cache=eager_cache)[0][:, -1]
            torch.testing.assert_close(step(idx), eager_logits, rtol=1e-5, atol=1e-5)
        assert static_cache.length == eager_cache.length == 9
        for eager, static in zip(eager_cache.layers, static_cache.layers):
            torch.testing.assert_close(static.k[:, :, :9], eager.k[:, :, :9], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(static.v[:, :, :9], eager.v[:, :, :9], rtol=1e-5, atol=1e-5)
        full = CompiledDecoder(model, model.new_kv_cache(1))
        for layer in full.cache.layers:
            layer.length = 16
        with pytest.raises(ValueError, match="cache with room"):
            full(torch.tensor([[1]]))


def test_compiled_roll_of_a_full_rope_cache_equals_drop_oldest_to_the_bit():
    model = tiny(rope=True)
    with torch.inference_mode():
        cache = model.new_kv_cache(1)
        model(torch.randint(0, 65, (1, 16)), cache=cache)  # full: 16 of 16 positions
        eager = [(layer.k.clone(), layer.v.clone()) for layer in cache.layers]
        CompiledDecoder(model, cache)
        cache.slide_to(1)  # the compiled roll
        for layer, (k, v) in zip(cache.layers, eager):
            rolled = LayerKV(1, 2, 16, 16, k.device, k.dtype)  # batch, heads, positions, head size
            rolled.k, rolled.v, rolled.length = k, v, 16
            rolled.drop_oldest(1, cache.rotary)
            assert layer.length == rolled.length == 15
            assert torch.equal(layer.k[:, :, :15], rolled.k[:, :, :15])
            assert torch.equal(layer.v[:, :, :15], rolled.v[:, :, :15])


def test_a_new_generation_reuses_the_compiled_graph():
    model = tiny(rope=True)
    generate(model, torch.tensor([[1, 2]]), 5, temperature=0, compiled=True)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    generate(model, torch.tensor([[7, 8, 9, 10]]), 20, temperature=0, compiled=True)  # another prompt, a new cache
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
