"""The key/value cache changes speed, not text: cached and uncached generation agree token for token."""

import pytest
import torch

from conftest import tiny_gpt as tiny
from tinylm import SimpleBigramLanguageModel
from tinylm.model.static_decode import CompiledDecoder
from tinylm.sampling import generate, next_logits

PROMPT = torch.tensor([[5, 9, 14], [20, 1, 33]])
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.mark.slow
def test_greedy_1000_characters_are_identical_with_and_without_cache():
    model = tiny()
    cached = generate(model, PROMPT, 1000, temperature=0, use_cache=True)
    plain = generate(model, PROMPT, 1000, temperature=0, use_cache=False)
    assert cached.shape == (2, 1003)
    assert torch.equal(cached, plain)  # the window slides 987 times with block_size 16
    assert torch.equal(generate(model, PROMPT, 1000, top_k=1, use_cache=True), plain)


def test_seeded_sampling_gives_the_same_text_both_ways():
    model = tiny()
    runs = [generate(model, PROMPT, 300, temperature=1.2, top_k=20, top_p=0.95,
                     generator=torch.Generator().manual_seed(7), use_cache=use) for use in (True, False)]
    assert torch.equal(*runs)
    assert len(set(runs[0][0, 3:].tolist())) > 5  # really sampled, not a constant


def test_model_generate_uses_the_cache_and_keeps_the_notebook_signature():
    model = tiny()
    start = torch.zeros((1, 1), dtype=torch.long)
    assert torch.equal(model.generate(start, 50, 0.0), generate(model, start, 50, 0.0, use_cache=False))


def test_prefill_in_pieces_matches_one_full_forward():
    model = tiny()
    idx = torch.randint(0, 65, (2, 12))
    full, _ = model(idx)
    cache = model.new_kv_cache(2)
    pieces = [model(idx[:, a:b], cache=cache)[0] for a, b in ((0, 5), (5, 6), (6, 12))]  # masks T>1 after a prefix
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(idx[:, :5], cache=cache)  # 12 + 5 > 16 positions


def test_rope_cache_is_exact_within_block_and_rolls_beyond():
    model = tiny(rope=True, qk_norm=True)
    start = torch.tensor([[3]])
    cached, plain = (generate(model, start, 15, 0.0, use_cache=use) for use in (True, False))
    assert torch.equal(cached, plain)  # 16 tokens: no window slide yet
    idx = torch.randint(0, 65, (1, 40))
    cache = model.new_kv_cache(1)
    for n in range(1, 41):
        next_logits(model, idx[:, :n], cache)
    assert cache.start == 24 and cache.length == 16
    # Layer 0's rolled keys equal the keys of the window computed afresh at positions 0..15.
    window = model.embed(idx[:, 24:])
    _, fresh_k, fresh_v = model.blocks[0].attn.heads(model.blocks[0].ln1(window))
    layer = cache.layers[0]
    torch.testing.assert_close(layer.k[:, :, :16], fresh_k, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.v[:, :, :16], fresh_v, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_a_lazily_rolled_rope_cache_gives_the_eagerly_rolled_logits():
    """slack=16: a slide only moves the window's start; the keys move (and rotate back) once per 17
    slides. Attention sees the same relative positions, so the logits agree up to float rounding."""
    model = tiny(rope=True, qk_norm=True)  # block_size 16
    idx = torch.randint(0, 65, (2, 90))
    eager, lazy = model.new_kv_cache(2), model.new_kv_cache(2, slack=16)
    offsets = []
    for n in range(1, 91):
        expected = next_logits(model, idx[:, :n], eager)  # (2, V)
        torch.testing.assert_close(next_logits(model, idx[:, :n], lazy), expected, rtol=1e-4, atol=1e-5)
        offsets.append(lazy.layers[0].offset)
    assert max(offsets) == 16 and offsets[40:].count(0) >= 2  # the window moved to the front, more than once
    assert (lazy.start, lazy.length) == (eager.start, eager.length) == (74, 16)
    assert tiny().new_kv_cache(1, slack=16).slack == 0  # learned positions: the cache refills, no slack
    with pytest.raises(ValueError, match="without slack"):
        CompiledDecoder(model, lazy)


@torch.no_grad()
@pytest.mark.parametrize("rope", [False, True])
def test_next_logits_of_a_tail_with_its_offset_equal_those_of_the_whole_sequence(rope):
    """A caller may let go of tokens before the window (the compressor keeps a bounded history)."""
    model = tiny(rope=rope)  # block_size 16
    idx = torch.randint(0, 65, (2, 60))
    whole, tail = model.new_kv_cache(2), model.new_kv_cache(2)
    for n in range(1, 61):
        offset = max(0, n - 20)  # keep 20 tokens: more than the window
        expected = next_logits(model, idx[:, :n], whole)
        assert torch.equal(next_logits(model, idx[:, offset:n], tail, offset=offset), expected)
        assert torch.equal(next_logits(model, idx[:, offset:n], offset=offset), next_logits(model, idx[:, :n]))
    with pytest.raises(ValueError, match="after the window"):
        next_logits(model, idx[:, 50:], offset=50)  # 10 tokens: the 16-token window is not all there


def test_bigram_model_generates_without_a_cache():
    model = SimpleBigramLanguageModel(65, 16)
    out = generate(model, torch.zeros((3, 1), dtype=torch.long), 40, use_cache=True)
    assert out.shape == (3, 41)
