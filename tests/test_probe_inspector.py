"""The inspector's numbers: logit lens and sampling-knob distributions (``tinylm.inspect.probe``)."""

import pytest
import torch
from torch.nn import functional as F

from tinylm.config import ModelConfig
from tinylm.data import CharTokenizer
from tinylm.errors import TinyLMError
from tinylm.inspect import probe
from tinylm.model import GPT, BigramModel
from tinylm.sampling import next_token_probabilities, sample_next

TEXT = "the quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    tok = CharTokenizer.from_text(TEXT)
    model = GPT(ModelConfig(n_layer=2, n_embed=32, n_heads=2, block_size=16, init="pytorch"), tok.vocab_size)
    return model.eval(), tok


def test_logit_lens_ends_at_the_models_own_prediction(gpt):
    model, tok = gpt
    lens = probe.logit_lens(model, tok, "the lazy dog")  # (L + 1, T, V)
    assert lens.shape == (3, 12, tok.vocab_size)
    assert torch.allclose(lens.sum(-1), torch.ones(3, 12), atol=1e-5)
    logits, _ = model(torch.tensor([tok.encode("the lazy dog")]))
    assert torch.allclose(lens[-1], F.softmax(logits[0], dim=-1), atol=1e-6)
    # row 0 reads the embeddings alone: the head applied to ln_f(token + position embedding)
    ids = torch.tensor([tok.encode("the lazy dog")])
    embed_only = F.softmax(model.head(model.ln_f(model.embed(ids)))[0], dim=-1)
    assert torch.allclose(lens[0], embed_only, atol=1e-6)
    assert not torch.allclose(lens[0], lens[1])


def test_logit_lens_uses_the_last_block_size_characters(gpt):
    model, tok = gpt
    assert probe.logit_lens(model, tok, TEXT).shape[1] == 16
    assert torch.equal(probe.logit_lens(model, tok, TEXT), probe.logit_lens(model, tok, TEXT[-16:]))


def test_sampling_distributions_follow_the_knobs(gpt):
    model, tok = gpt
    dists = probe.sampling_distributions(model, tok, "the qu", temperature=0.5, top_k=3)
    top = next_token_probabilities(model, tok, "the qu", k=tok.vocab_size)
    assert [dists["model"][tok.encode(ch)[0]].item() for ch, _ in top] == pytest.approx([p for _, p in top], abs=1e-6)
    logits = torch.log(dists["model"])
    assert torch.allclose(dists["temperature"], F.softmax(logits / 0.5, dim=-1), atol=1e-5)
    kept = dists["sampled"] > 0
    assert kept.sum() == 3 and set(kept.nonzero()[:, 0].tolist()) == set(dists["model"].topk(3).indices.tolist())
    assert dists["sampled"].sum().item() == pytest.approx(1.0, abs=1e-6)
    # sample_next draws only from the kept set, with these probabilities
    raw_logits = logits.unsqueeze(0).expand(4000, -1)
    draws = sample_next(raw_logits, 0.5, 3, generator=torch.Generator().manual_seed(0))[:, 0]
    counts = torch.bincount(draws, minlength=tok.vocab_size).float() / 4000
    assert set(counts.nonzero()[:, 0].tolist()) <= set(kept.nonzero()[:, 0].tolist())
    assert torch.allclose(counts, dists["sampled"], atol=0.04)


def test_top_p_keeps_the_smallest_set_reaching_p_and_greedy_is_one_hot(gpt):
    model, tok = gpt
    dists = probe.sampling_distributions(model, tok, "", temperature=1.0, top_p=0.5)
    ranked = dists["model"].sort(descending=True).values
    n = int((torch.cumsum(ranked, 0) - ranked < 0.5).sum())
    assert int((dists["sampled"] > 0).sum()) == n
    greedy = probe.sampling_distributions(model, tok, "the", temperature=0)
    assert greedy["sampled"].max() == 1.0 and greedy["sampled"].sum() == 1.0
    assert greedy["sampled"].argmax() == greedy["model"].argmax()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 1.5}, "top_p")])
def test_bad_knobs_raise_the_sampling_rules(gpt, kwargs, fragment):
    model, tok = gpt
    with pytest.raises(TinyLMError, match=fragment):
        probe.sampling_distributions(model, tok, "the", **kwargs)


def test_logit_lens_needs_a_transformer_and_known_characters(gpt):
    model, tok = gpt
    with pytest.raises(TinyLMError, match="transformer"):
        probe.logit_lens(BigramModel(tok.vocab_size, 8), tok, "the")
    with pytest.raises(TinyLMError, match="never saw"):
        probe.logit_lens(model, tok, "THE")
