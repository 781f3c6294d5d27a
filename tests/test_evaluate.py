"""``exact_loss`` is the number in every results table: it must equal the plain per-token definition."""

import math

import pytest
import torch
from torch.nn import functional as F

from tinylm import TransformerLanguageModel, evaluate
from tinylm.data import BatchLoader
from tinylm.evaluate import (
    Evaluator,
    batches_per_forward,
    estimate_loss,
    exact_loss,
    joined_batches,
    target_log_probs,
)


def naive_exact_loss(model, data: torch.Tensor, block_size: int) -> float:
    """Token i+1 scored from the up-to-block_size tokens of its own window, one forward per token.

    Windows are the consecutive blocks [0, T), [T, 2T), ...; a token in the last, partial block
    is scored with the window of the last T tokens before it (the full window ending at the split's end).
    """
    n_targets, total = len(data) - 1, 0.0
    full = (n_targets // block_size) * block_size
    with torch.no_grad():
        for i in range(n_targets):
            if i < full:
                start = (i // block_size) * block_size
            else:
                start = n_targets - block_size
            context = data[start:i + 1][None]  # (1, t) the model sees only its window's tokens so far
            logits, _ = model(context)
            total += F.cross_entropy(logits[0, -1:], data[i + 1:i + 2]).item()
    return total / n_targets


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return TransformerLanguageModel(11, n_embed=16, block_size=8, n_layer=2, n_heads=2, init="pytorch").eval()


def test_exact_loss_equals_a_per_token_loop_including_the_last_partial_window():
    model = tiny_model()
    data = torch.randint(0, 11, (8 * 5 + 4,), generator=torch.Generator().manual_seed(1))  # 43 targets: 5 windows + 3
    assert (len(data) - 1) % 8 != 0
    expected = naive_exact_loss(model, data, 8)
    assert math.isclose(exact_loss(model, data, batch_size=3), expected, rel_tol=1e-5)


def test_exact_loss_of_a_split_that_fills_whole_windows():
    model = tiny_model()
    data = torch.randint(0, 11, (8 * 4 + 1,), generator=torch.Generator().manual_seed(2))
    assert math.isclose(exact_loss(model, data), naive_exact_loss(model, data, 8), rel_tol=1e-5)


@pytest.mark.parametrize("length", [2, 5, 8, 9])  # up to block_size + 1: shorter than, or just one window
def test_exact_loss_of_a_split_no_longer_than_a_window_never_reads_its_end_as_context(length):
    """The remainder window used to start at n_targets - block_size, before the split's start: the index
    wrapped, and the last target became every target's first context token (8 tokens: -0.63 nats)."""
    model = tiny_model()
    data = torch.randint(0, 11, (length,), generator=torch.Generator().manual_seed(length))
    expected = naive_exact_loss(model, data, min(8, length - 1))
    assert math.isclose(exact_loss(model, data, batch_size=3), expected, rel_tol=1e-5)
    assert math.isclose(-target_log_probs(model, data).mean().item(), expected, rel_tol=1e-5)


def test_estimates_repeat_and_leave_the_training_batches_alone():
    model = tiny_model().train()
    data = torch.randint(0, 11, (500,), generator=torch.Generator().manual_seed(3))
    loader = BatchLoader(data, block_size=8, batch_size=4)
    before = loader.state_dict()["generator"].clone()
    first = estimate_loss(model, {"val": loader}, eval_iters=3)
    assert estimate_loss(model, {"val": loader}, eval_iters=3) == first
    assert torch.equal(loader.state_dict()["generator"], before)
    assert model.training  # eval mode was restored
    result = Evaluator(model, loader, loader, eval_iters=3).estimate()
    assert math.isclose(result["val_perplexity"], math.exp(result["val_loss"]))


def test_joined_batches_score_the_same_windows_as_one_forward_each(monkeypatch):
    """On a GPU, batches joined into fewer forwards (fewer kernel launches) are the windows drawn one
    by one before, and the estimate is the same mean, to rounding. The CPU, where joining is off,
    stands in for the GPU here by being given a budget."""
    model = tiny_model()  # 2 layers: at most 2 batches per forward
    cpu = torch.device("cpu")
    data = torch.randint(0, 11, (500,), generator=torch.Generator().manual_seed(3))
    loader = BatchLoader(data, block_size=8, batch_size=4)
    alone = estimate_loss(model, {"val": loader}, eval_iters=7)
    assert batches_per_forward(model, loader, cpu) == 1  # off on a CPU
    monkeypatch.setitem(evaluate.EVAL_TOKENS_PER_FORWARD, "cpu", 1 << 17)
    assert batches_per_forward(model, loader, cpu) == 2  # no more than the model's layers
    one_by_one = [loader.get_batch(g) for g in [torch.Generator().manual_seed(0)] for _ in range(7)]
    joined = list(joined_batches(loader, torch.Generator().manual_seed(0), 7, per_forward=7))
    assert [n for n, _, _ in joined] == [7]
    assert torch.equal(joined[0][1], torch.cat([x for x, _ in one_by_one]))
    assert torch.equal(joined[0][2], torch.cat([y for _, y in one_by_one]))
    assert [n for n, _, _ in joined_batches(loader, torch.Generator(), 7, per_forward=3)] == [3, 3, 1]
    assert math.isclose(estimate_loss(model, {"val": loader}, eval_iters=7)["val"], alone["val"], rel_tol=1e-6)
    monkeypatch.setitem(evaluate.EVAL_TOKENS_PER_FORWARD, "cpu", 32)  # one 4 x 8 batch: the token budget binds
    assert batches_per_forward(model, loader, cpu) == 1
    monkeypatch.setitem(evaluate.EVAL_TOKENS_PER_FORWARD, "cpu", 1 << 17)
    monkeypatch.setattr(model, "vocab_size", 10**7)  # a large vocabulary's logits: one batch per forward
    assert batches_per_forward(model, loader, cpu) == 1


def test_a_compiled_model_is_scored_through_its_eager_module_without_compiling():
    """Evaluation shapes and modes differ from training's: scoring must not compile graphs of its own."""
    from torch._dynamo.utils import counters

    model = tiny_model()
    compiled = torch.compile(model)
    data = torch.randint(0, 11, (50,), generator=torch.Generator().manual_seed(2))
    loader = BatchLoader(data, block_size=8, batch_size=4)
    frames = counters["frames"]["total"]
    assert exact_loss(compiled, data) == exact_loss(model, data)
    assert estimate_loss(compiled, {"val": loader}, eval_iters=2) == estimate_loss(model, {"val": loader}, eval_iters=2)
    assert counters["frames"]["total"] == frames  # dynamo never traced a frame


def test_target_log_probs_give_the_exact_loss_and_score_an_ensemble_without_running_it():
    from tinylm.model.ensemble import Ensemble

    first = tiny_model()
    torch.manual_seed(1)
    second = TransformerLanguageModel(11, n_embed=16, block_size=8, n_layer=2, n_heads=2, init="pytorch").eval()
    data = torch.randint(0, 11, (8 * 5 + 4,), generator=torch.Generator().manual_seed(1))  # windows + a remainder
    log_p = [target_log_probs(m, data) for m in (first, second)]
    assert log_p[0].shape == (len(data) - 1,)
    assert math.isclose(-log_p[0].double().mean().item(), exact_loss(first, data), rel_tol=1e-6)
    mixed = torch.logaddexp(log_p[0], log_p[1]) - math.log(2)  # log of the mean probability of each target
    assert math.isclose(-mixed.double().mean().item(), exact_loss(Ensemble([first, second]), data), rel_tol=1e-6)
