"""Autoregressive sampling: pick the next token, append it, repeat. The one owner of sampling rules.

    options = SamplingOptions(max_new_tokens=200, temperature=0.8, top_k=10)
    options.validate()                                  # every caller checks with the same rules
    out = generate(model, torch.zeros((1, 1), dtype=torch.long), 100, top_k=10)   # (1, 101) ids
    for text in stream_text(model, tok, "ROMEO:", options, stop="\\n\\n"):
        print(text, end="", flush=True)
    top = next_token_probabilities(model, tok, "ROMEO", k=15)   # [(token text, probability), ...]

``temperature`` divides the logits (0 means greedy argmax); ``top_k`` keeps the k most likely
tokens; ``top_p`` keeps the smallest set whose probabilities add up to at least p. An empty prompt
starts from token 0, the notebook's empty context, which is not part of the returned text.

Models with ``new_kv_cache`` (the transformer) generate through a key/value cache by default
(``use_cache=True``): the same tokens as the notebook's loop, much faster (``tinylm.model.kv_cache``).
``compiled=True`` runs each one-token step through one torch.compile graph (``tinylm.model.static_decode``):
1.4-1.8x the tokens/s of batch-1 sampling on one CPU thread after a one-off compile of seconds, with
logits equal to ~1e-6 rather than to the bit.
"""

from __future__ import annotations

import codecs
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from tinylm.config_checks import MAX_SEED
from tinylm.device import model_device
from tinylm.errors import TinyLMError
from tinylm.model import eval_mode
from tinylm.model.static_decode import CompiledDecoder

MAX_TEMPERATURE = 100.0
MIN_TEMPERATURE = 1e-3  # below this, float32 logits / T overflow; use 0 for greedy


@dataclass
class SamplingOptions:
    """How to pick each next token; ``validate`` holds the rules for the CLI, ``-i`` and the server."""

    max_new_tokens: int = 500
    temperature: float = 1.0  # 0 means greedy
    top_k: int | None = None
    top_p: float | None = None

    def validate(self, max_tokens: int | None = None) -> SamplingOptions:
        """Raise TinyLMError naming the first out-of-range value; return self."""
        limit = "" if max_tokens is None else f" and <= {max_tokens}"
        _require_int("max_new_tokens", self.max_new_tokens)
        if self.max_new_tokens < 0 or (max_tokens is not None and self.max_new_tokens > max_tokens):
            raise TinyLMError(f"max_new_tokens must be >= 0{limit}, got {self.max_new_tokens}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not (
                t == 0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
            raise TinyLMError(f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], "
                              f"got {t!r}")
        if self.top_k is not None and (_require_int("top_k", self.top_k) or self.top_k < 1):
            raise TinyLMError(f"top_k must be >= 1, got {self.top_k}")
        p = self.top_p
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1):
            raise TinyLMError(f"top_p must be in (0, 1], got {p!r}")
        return self


def _require_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TinyLMError(f"{name} must be an integer, got {value!r}")


def check_seed(seed) -> int:
    """A seed torch accepts: an integer in [0, 2**63 - 1]."""
    _require_int("seed", seed)
    if not 0 <= seed <= MAX_SEED:
        raise TinyLMError(f"seed must be in [0, 2**63 - 1], got {seed}")
    return seed


def check_num_samples(num_samples) -> int:
    _require_int("num_samples", num_samples)
    if num_samples < 1:
        raise TinyLMError(f"num_samples must be >= 1, got {num_samples}")
    return num_samples


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set the logits of tokens outside the top-k / top-p set to -inf. ``logits`` is (B, V)."""
    if top_k is not None and top_k < logits.size(-1):
        kth_best = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the best always stays.
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop_sorted[:, 0] = False  # also when top_p is below float32's smallest number and rounds to 0
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row from the last-position logits (B, V); returns (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = F.softmax(logits, dim=-1)
    try:  # checked only on failure: a check per token would wait on the device at every step
        return torch.multinomial(probs, num_samples=1, generator=generator)
    except RuntimeError:
        if bool(torch.isfinite(probs).all()):
            raise
        raise TinyLMError("the model's next-token probabilities are NaN or infinite: its weights are broken, as a "
                          "training that diverged leaves them; train again with a lower learning_rate") from None


def supports_cache(model: torch.nn.Module) -> bool:
    """A model with ``new_kv_cache``, unless it says otherwise (an ensemble with a bigram member)."""
    return hasattr(model, "new_kv_cache") and getattr(model, "supports_cache", True)


def next_logits(model: torch.nn.Module, idx: torch.Tensor, cache=None,
                step: CompiledDecoder | None = None, offset: int = 0) -> torch.Tensor:
    """Logits (B, V) of the token after ``idx`` (B, N), as the model sees its last block_size tokens.

    With a cache, ``idx`` must extend the sequence of the previous call: only the tokens the cache
    has not seen run through the model (one new token through ``step`` when given: a compiled step).
    ``offset``: idx may be the tail of the sequence, whose first ``offset`` tokens the caller let go
    (at least the window must be there); the cache counts positions in the whole sequence.
    """
    start = max(0, offset + idx.size(1) - model.block_size)  # the window: tokens start.. of the sequence
    if start < offset:
        raise ValueError(f"idx starts at token {offset}, after the window's start ({start})")
    if cache is None:  # the notebook's loop: rerun the whole window
        return model(idx[:, start - offset:])[0][:, -1, :]
    cache.slide_to(start)
    fresh = idx[:, cache.start + cache.length - offset:]  # (B, T_new): tokens not yet in the cache
    if step is not None and fresh.size(1) == 1:
        return step(fresh)
    return model(fresh, cache=cache)[0][:, -1, :]


@torch.inference_mode()
def stream(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
           use_cache: bool = True, compiled: bool = False) -> Iterator[torch.Tensor]:
    """Yield each new token (B, 1) of the continuation of ``idx`` (B, T) as soon as it is sampled.

    Runs under ``torch.inference_mode`` (less bookkeeping per operation than ``no_grad``): the
    yielded tensors are inference tensors, fine to read, index or concatenate, not to train on.
    """
    with eval_mode(model):
        if not (use_cache and supports_cache(model)):  # the notebook's loop: a growing idx, whole window each step
            for _ in range(max_new_tokens):
                next_id = sample_next(next_logits(model, idx), temperature, top_k, top_p, generator)  # (B, 1)
                idx = torch.cat((idx, next_id), dim=1)  # (B, T+1)
                yield next_id
            return
        B, T = idx.shape
        tokens = torch.empty((B, T + max_new_tokens), dtype=idx.dtype, device=idx.device)  # every token, filled as
        tokens[:, :T] = idx  # we go: no new tensor for the sequence per step
        cache = model.new_kv_cache(B, weight_copies=not compiled)  # copying them costs ~10 steps
        step = CompiledDecoder(model, cache) if compiled else None
        for n in range(T, T + max_new_tokens):
            logits = next_logits(model, tokens[:, :n], cache, step)  # (B, V)
            next_id = sample_next(logits, temperature, top_k, top_p, generator)  # (B, 1)
            tokens[:, n:n + 1] = next_id
            yield next_id


def generate(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True, compiled: bool = False) -> torch.Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens``, feeding at most ``block_size`` tokens back in."""
    new = list(stream(model, idx, max_new_tokens, temperature, top_k, top_p, generator, use_cache, compiled))
    return torch.cat([idx, *new], dim=1)  # (B, T + max_new_tokens)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's token ids; for an empty prompt the end-of-text token (byte, BPE) or [0] (the notebook's)."""
    if prompt:
        return tokenizer.encode(prompt)
    eot = getattr(tokenizer, "eot_id", None)
    return [0 if eot is None else eot]


class TextDecoder:
    """Token ids to text as they come: bytes of a character split across tokens wait for the rest.

    Byte and BPE tokens can end mid-character; decoding each on its own would print U+FFFD pieces.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.bytes_of = getattr(tokenizer, "decode_bytes", None)  # None: a tokenizer of whole characters
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token: int) -> str:
        if self.bytes_of is None:
            return self.tokenizer.decode([token])
        return self.decoder.decode(self.bytes_of([token]))

    def flush(self) -> str:
        """What an unfinished character at the end becomes (U+FFFD), or ""."""
        return self.decoder.decode(b"", final=True) if self.bytes_of is not None else ""


def _token_stream(model, tokenizer, prompt: str, options: SamplingOptions, num_samples: int,
                  generator: torch.Generator | None, compiled: bool) -> Iterator[torch.Tensor]:
    ids = prompt_ids(tokenizer, prompt)
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=model_device(model))  # (N, T)
    return stream(model, idx, options.max_new_tokens, options.temperature, options.top_k, options.top_p,
                  generator, compiled=compiled)


def stream_text(model: torch.nn.Module, tokenizer, prompt: str, options: SamplingOptions,
                stop: str | None = None, generator: torch.Generator | None = None,
                compiled: bool = False) -> Iterator[str]:
    """Yield the continuation of ``prompt`` one token's text at a time; end once it ends with ``stop``."""
    text, decoder = "", TextDecoder(tokenizer)
    with contextlib.closing(_token_stream(model, tokenizer, prompt, options, 1, generator, compiled)) as tokens:
        for next_id in tokens:  # (1, 1)
            piece = decoder.add(next_id.item())
            if not piece:  # the middle of a character: wait for its other bytes
                continue
            yield piece
            text += piece
            if stop and text.endswith(stop):
                return
    tail = decoder.flush()
    if tail:
        yield tail


def sample_texts(model: torch.nn.Module, tokenizer, prompt: str, options: SamplingOptions,
                 num_samples: int = 1, stop: str | None = None,
                 generator: torch.Generator | None = None, compiled: bool = False) -> list[str]:
    """``num_samples`` continuations sampled as ONE batch, each cut after its first ``stop``."""
    texts, done = [""] * num_samples, [False] * num_samples
    decoders = [TextDecoder(tokenizer) for _ in range(num_samples)]
    with contextlib.closing(_token_stream(model, tokenizer, prompt, options, num_samples, generator,
                                          compiled)) as tokens:
        for next_id in tokens:  # (N, 1)
            for row, token in enumerate(next_id[:, 0].tolist()):
                if not done[row]:
                    texts[row] += decoders[row].add(token)
                    done[row] = bool(stop) and texts[row].endswith(stop)
            if all(done):
                break
    return [text if finished else text + decoder.flush() for text, finished, decoder in zip(texts, done, decoders)]


@torch.no_grad()
def next_token_probabilities(model: torch.nn.Module, tokenizer, text: str, k: int = 15,
                             temperature: float = 1.0) -> list[tuple[str, float]]:
    """The k most likely next tokens after ``text`` (its last block_size tokens), with probabilities."""
    ids = prompt_ids(tokenizer, text)[-model.block_size:]
    idx = torch.tensor([ids], dtype=torch.long, device=model_device(model))  # (1, T)
    with eval_mode(model):
        logits = model(idx)[0][0, -1].float()  # (V,)
    probs = F.softmax(logits / temperature, dim=-1)
    top = torch.topk(probs, min(k, probs.numel()))
    as_text = getattr(tokenizer, "token_text", None) or (lambda i: tokenizer.decode([i]))  # byte/BPE: <0xC3>
    return [(as_text(i), p) for i, p in zip(top.indices.tolist(), top.values.tolist())]
