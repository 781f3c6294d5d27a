import math

import pytest
import torch

from tinylm.errors import TinyLMError
from tinylm.sampling import filter_logits, sample_next


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits[0])).flatten().tolist())


# Probabilities 0.4, 0.3, 0.15, 0.1, 0.05 on tokens 2, 0, 4, 1, 3.
PROBS = torch.tensor([[0.3, 0.1, 0.4, 0.05, 0.15]])
LOGITS = PROBS.log()


def test_top_k_keeps_exactly_the_k_most_likely():
    assert kept(filter_logits(LOGITS, top_k=1)) == {2}
    assert kept(filter_logits(LOGITS, top_k=3)) == {2, 0, 4}
    assert kept(filter_logits(LOGITS, top_k=10)) == {0, 1, 2, 3, 4}


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert kept(filter_logits(LOGITS, top_p=0.4)) == {2}  # 0.4 alone reaches 0.4
    assert kept(filter_logits(LOGITS, top_p=0.5)) == {2, 0}  # 0.7
    assert kept(filter_logits(LOGITS, top_p=0.71)) == {2, 0, 4}  # 0.85
    assert kept(filter_logits(LOGITS, top_p=0.01)) == {2}  # the best token always stays
    assert kept(filter_logits(LOGITS, top_p=1e-46)) == {2}  # even when top_p rounds to 0 in float32
    assert kept(filter_logits(LOGITS, top_p=1.0)) == {0, 1, 2, 3, 4}


def test_filtered_sampling_only_draws_kept_tokens():
    gen = torch.Generator().manual_seed(0)
    draws = {sample_next(LOGITS.repeat(500, 1), top_p=0.5, generator=gen)[i, 0].item() for i in range(500)}
    assert draws == {0, 2}


def test_temperature_zero_is_argmax():
    assert sample_next(LOGITS, temperature=0).item() == 2


def test_low_temperature_sharpens():
    gen = torch.Generator().manual_seed(0)
    draws = sample_next(LOGITS.repeat(2000, 1), temperature=0.1, generator=gen)
    assert (draws == 2).float().mean() > 0.9 > math.exp(math.log(0.4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_sampling_from_non_finite_logits_is_a_one_line_error_not_a_torch_error(bad):
    logits = torch.zeros(2, 5)
    logits[1, 3] = bad
    with pytest.raises(TinyLMError, match="NaN or infinite.*lower learning_rate"):
        sample_next(logits, temperature=1.0)
