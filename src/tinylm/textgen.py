"""Text in, text out: prompts, character streams and stop strings over ``tinylm.generate.stream``.

    for ch in stream_chars(model, tok, "ROMEO:", Sampling(max_new_tokens=200), stop="\\n\\n"):
        print(ch, end="", flush=True)
    texts = sample_texts(model, tok, "ROMEO:", Sampling(temperature=0.8), num_samples=4)

Shared by ``tinylm sample`` and ``tinylm serve``. An empty prompt starts from token 0, the
notebook's empty context, which is not part of the returned text.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch.nn import functional as F

from tinylm.device import model_device
from tinylm.errors import TinyLMError
from tinylm.generate import stream
from tinylm.tokenizer import CharTokenizer


@dataclass
class Sampling:
    """How to pick each next character (see ``tinylm.generate.sample_next``)."""

    max_new_tokens: int = 500
    temperature: float = 1.0  # 0 means greedy
    top_k: int | None = None
    top_p: float | None = None

    def check(self, max_tokens: int | None = None) -> None:
        """Raise TinyLMError naming the first out-of-range value."""
        if self.max_new_tokens < 0 or (max_tokens is not None and self.max_new_tokens > max_tokens):
            limit = "" if max_tokens is None else f" and <= {max_tokens}"
            raise TinyLMError(f"max_new_tokens must be >= 0{limit}, got {self.max_new_tokens}")
        if not 0 <= self.temperature <= 100:
            raise TinyLMError(f"temperature must be in [0, 100] (0 means greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise TinyLMError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise TinyLMError(f"top_p must be in (0, 1], got {self.top_p}")


def prompt_ids(tokenizer: CharTokenizer, prompt: str) -> list[int]:
    """The prompt's token ids, or [0] (the notebook's empty context) for an empty prompt."""
    return tokenizer.encode(prompt) if prompt else [0]


def stream_chars(model: torch.nn.Module, tokenizer: CharTokenizer, prompt: str, sampling: Sampling,
                 stop: str | None = None, generator: torch.Generator | None = None) -> Iterator[str]:
    """Yield the continuation of ``prompt`` one character at a time; end once it ends with ``stop``."""
    idx = torch.tensor([prompt_ids(tokenizer, prompt)], dtype=torch.long, device=model_device(model))  # (1, T)
    text = ""
    tokens = stream(model, idx, sampling.max_new_tokens, sampling.temperature, sampling.top_k,
                    sampling.top_p, generator)
    with contextlib.closing(tokens):  # leaving early still restores the model's train/eval mode
        for next_id in tokens:
            ch = tokenizer.decode([next_id.item()])
            yield ch
            text += ch
            if stop and text.endswith(stop):
                return


def sample_texts(model: torch.nn.Module, tokenizer: CharTokenizer, prompt: str, sampling: Sampling,
                 num_samples: int = 1, stop: str | None = None,
                 generator: torch.Generator | None = None) -> list[str]:
    """``num_samples`` continuations sampled as ONE batch, each cut after its first ``stop``."""
    ids = prompt_ids(tokenizer, prompt)
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=model_device(model))  # (N, T)
    texts, done = [""] * num_samples, [False] * num_samples
    tokens = stream(model, idx, sampling.max_new_tokens, sampling.temperature, sampling.top_k,
                    sampling.top_p, generator)
    with contextlib.closing(tokens):
        for next_id in tokens:  # (N, 1)
            for row, token in enumerate(next_id[:, 0].tolist()):
                if not done[row]:
                    texts[row] += tokenizer.itos[token]
                    done[row] = bool(stop) and texts[row].endswith(stop)
            if all(done):
                break
    return texts


@torch.no_grad()
def next_char_probabilities(model: torch.nn.Module, tokenizer: CharTokenizer, text: str,
                            k: int = 15, temperature: float = 1.0) -> list[tuple[str, float]]:
    """The k most likely next characters after ``text`` (its last block_size characters), with probabilities."""
    ids = prompt_ids(tokenizer, text)[-model.block_size:]
    idx = torch.tensor([ids], dtype=torch.long, device=model_device(model))  # (1, T)
    was_training = model.training
    model.eval()
    logits = model(idx)[0][0, -1].float()  # (V,)
    model.train(was_training)
    probs = F.softmax(logits / max(temperature, 1e-6), dim=-1)
    top = torch.topk(probs, min(k, probs.numel()))
    return [(tokenizer.itos[i], p) for i, p in zip(top.indices.tolist(), top.values.tolist())]
