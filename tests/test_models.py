import math

import pytest
import torch

from tinylm import BigramLanguageModel, SimpleBigramLanguageModel, TransformerLanguageModel
from tinylm.sampling import generate

V = 65


def tiny_transformer(**options):
    torch.manual_seed(0)
    return TransformerLanguageModel(V, n_embed=32, block_size=16, n_layer=2, n_heads=2, **options)


def test_notebook_name_is_the_transformer_with_the_notebooks_init():
    model = BigramLanguageModel(V, 64, 16, 1, 4, 0.1)  # the notebook's positional call
    assert isinstance(model, TransformerLanguageModel)
    assert model.config.n_heads == 4 and model.config.dropout == 0.1 and model.config.init == "pytorch"


def test_loss_at_init_is_about_ln_vocab():
    model = tiny_transformer()
    x = torch.randint(0, V, (8, 16))
    _, loss = model(x, torch.randint(0, V, (8, 16)))
    assert abs(loss.item() - math.log(V)) < 0.05


def test_shapes():
    for model in (tiny_transformer(), SimpleBigramLanguageModel(V, 16)):
        logits, loss = model(torch.randint(0, V, (3, 11)))
        assert logits.shape == (3, 11, V) and loss is None


@pytest.mark.parametrize("make", [tiny_transformer, lambda: SimpleBigramLanguageModel(V, 16)])
def test_causality_future_tokens_do_not_change_past_logits(make):
    model = make().eval()
    x = torch.randint(0, V, (2, 16))
    t = 9
    changed = x.clone()
    changed[:, t + 1:] = (changed[:, t + 1:] + 1) % V
    before, after = model(x)[0], model(changed)[0]
    assert torch.equal(before[:, : t + 1], after[:, : t + 1])
    assert not torch.allclose(before[:, t + 1:], after[:, t + 1:])


def test_attention_weights_are_causal_and_rows_sum_to_one():
    model = tiny_transformer().eval()
    x = model.embed(torch.randint(0, V, (2, 16)))
    weights = model.blocks[0].attn.attention_weights(model.blocks[0].ln1(x))  # (B, H, T, T)
    assert weights.shape == (2, 2, 16, 16)
    assert torch.all(weights.triu(1) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 16))


@pytest.mark.parametrize("make", [tiny_transformer, lambda: SimpleBigramLanguageModel(V, 16)])
def test_overfits_one_batch(make):
    model = make()
    x = torch.randint(0, V, (4, 16))
    y = (7 * x + 3) % V  # learnable by both: each next token is a function of the current one
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(200):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3


def test_generate_with_top_k_1_is_greedy_argmax_decoding():
    model = tiny_transformer().eval()
    start = torch.tensor([[3, 1, 4]])
    sampled = model.generate(start, 40, top_k=1)
    idx = start
    for _ in range(40):
        logits, _ = model(idx[:, -16:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(sampled, idx)
    assert torch.equal(model.generate(start, 40, temperature=0), idx)


def test_generate_crops_context_beyond_block_size_and_keeps_mode():
    model = tiny_transformer()
    model.train()
    out = model.generate(torch.zeros((2, 1), dtype=torch.long), max_new_tokens=40)
    assert out.shape == (2, 41) and model.training


def test_sequences_longer_than_block_size_are_refused():
    with pytest.raises(ValueError, match="exceeds block_size"):
        tiny_transformer()(torch.zeros((1, 17), dtype=torch.long))


def test_seeded_generation_is_repeatable():
    model = tiny_transformer()
    runs = [generate(model, torch.zeros((1, 1), dtype=torch.long), 30,
                     generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*runs)


def test_explicit_attention_formula_equals_the_fused_kernel():
    torch.manual_seed(0)
    for options in ({}, {"rope": True, "qk_norm": True}):
        model = TransformerLanguageModel(65, n_embed=32, block_size=16, n_layer=2, n_heads=4, **options).eval()
        idx = torch.randint(0, 65, (3, 16))
        fused, _ = model(idx)
        for block in model.blocks:
            block.attn.use_sdpa = False  # the formula a reader follows: softmax(q k^T / sqrt(hs) + mask) v
        explicit, _ = model(idx)
        torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-5)
