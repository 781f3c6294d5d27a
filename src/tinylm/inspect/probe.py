"""Look inside a trained model: the numbers behind the pictures in ``tinylm.inspect.plots``.

    metrics = run_metrics("runs/bigram")                  # one dict per evaluation
    probs = bigram_probabilities(model)                   # (V, V): row i = P(next char | char i)
    weights = attention_maps(model, tok, "To be, or not")  # (L, H, T, T), rows sum to 1
    top = next_char_distribution(model, tok, "ROMEO:", k=15)   # [(char, probability), ...]
    points = embedding_pca(model)                         # (V, 2) character embeddings in 2-D
    lens = logit_lens(model, tok, "ROMEO")                # (L + 1, T, V) guesses after each layer
    dists = sampling_distributions(model, tok, "ROMEO", temperature=0.8, top_k=10)   # three (V,) rows

Plain torch, no matplotlib. A picture that does not fit the model (attention on the bigram model)
or a prompt with characters the model never saw raises ``TinyLMError``. The next-character
distribution is ``tinylm.sampling.next_token_probabilities``, the same numbers the playground shows.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from tinylm.data import CharTokenizer
from tinylm.errors import TinyLMError
from tinylm.model import GPT, BigramModel, eval_mode
from tinylm.sampling import SamplingOptions, filter_logits, next_logits, next_token_probabilities, prompt_ids
from tinylm.training.rundir import RunDir, unwrap


def run_metrics(run_dir: str | Path) -> list[dict]:
    """The evaluations of a run: ``metrics.jsonl`` if present, else the checkpoint's copy."""
    return RunDir(run_dir).read_metrics()


def _require(model: nn.Module, kind: type, picture: str) -> nn.Module:
    model = unwrap(model)
    if not isinstance(model, kind):
        wanted = "the bigram model" if kind is BigramModel else "a transformer"
        raise TinyLMError(f"the {picture} picture needs {wanted}, but this run holds a "
                          f"{type(model).__name__}; pick a run of the right kind")
    return model


def encode_prompt(model: nn.Module, tokenizer: CharTokenizer, prompt: str) -> torch.Tensor:
    """(1, T) token ids of the prompt's last ``block_size`` characters, on the model's device."""
    if not prompt:
        raise TinyLMError("the prompt is empty; give one with --prompt, e.g. --prompt 'ROMEO:'")
    ids = tokenizer.encode(prompt)[-unwrap(model).block_size:]
    device = next(model.parameters()).device
    return torch.tensor([ids], dtype=torch.long, device=device)


@torch.no_grad()
def bigram_probabilities(model: nn.Module) -> torch.Tensor:
    """(V, V) table: row i is the learned distribution of the character after character i."""
    model = _require(model, BigramModel, "bigram")
    return F.softmax(model.token_embedding_table.weight.float(), dim=-1).cpu()


@torch.no_grad()
def attention_maps(model: nn.Module, tokenizer: CharTokenizer, prompt: str) -> torch.Tensor:
    """(L, H, T, T) attention weights of every layer and head for the prompt, as forward uses them.

    Row t of a head's matrix says how much position t takes from each position <= t.
    """
    model = _require(model, GPT, "attention")
    idx = encode_prompt(model, tokenizer, prompt)  # (1, T)
    layers = []
    with eval_mode(model):  # no dropout: the weights the model uses when it writes
        x = model.embed(idx)  # (1, T, C)
        for block in model.blocks:
            layers.append(block.attn.attention_weights(block.ln1(x))[0])  # (H, T, T)
            x = block(x)  # the next layer attends over this layer's output
    return torch.stack(layers).float().cpu()  # (L, H, T, T)


@torch.no_grad()
def logit_lens(model: nn.Module, tokenizer: CharTokenizer, prompt: str) -> torch.Tensor:
    """(L + 1, T, V) next-token probabilities read out of the residual stream at every depth.

    Row 0 applies the final LayerNorm and the head to the embeddings alone, row i to the stream after
    block i; row L is the model's own prediction. A learner sees the guess form layer by layer.
    """
    model = _require(model, GPT, "logit lens")
    idx = encode_prompt(model, tokenizer, prompt)  # (1, T)
    with eval_mode(model):
        x = model.embed(idx)  # (1, T, C)
        streams = [x]
        for block in model.blocks:
            x = block(x)
            streams.append(x)
        logits = model.head(model.ln_f(torch.cat(streams)))  # (L + 1, T, C) -> (L + 1, T, V)
    return F.softmax(logits.float(), dim=-1).cpu()


@torch.no_grad()
def sampling_distributions(model: nn.Module, tokenizer: CharTokenizer, text: str, temperature: float = 1.0,
                           top_k: int | None = None, top_p: float | None = None) -> dict[str, torch.Tensor]:
    """The next-token distribution after ``text`` at each stage of ``sample_next``, each (V,).

    ``model``: softmax of the logits; ``temperature``: after dividing by the temperature; ``sampled``:
    after top-k / top-p too, the distribution a sample is drawn from. Temperature 0 is greedy: one-hot.
    An empty text is the empty context (token 0), as when sampling.
    """
    SamplingOptions(0, temperature, top_k, top_p).validate()
    model = unwrap(model)
    device = next(model.parameters()).device
    idx = torch.tensor([prompt_ids(tokenizer, text)], dtype=torch.long, device=device)  # (1, T)
    with eval_mode(model):
        logits = next_logits(model, idx).float()  # (1, V)
    raw = F.softmax(logits, dim=-1)
    if temperature == 0:
        greedy = F.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()  # (1, V)
        return {"model": raw[0].cpu(), "temperature": greedy[0].cpu(), "sampled": greedy[0].cpu()}
    tempered = logits / temperature
    sampled = F.softmax(filter_logits(tempered, top_k, top_p), dim=-1)
    return {"model": raw[0].cpu(), "temperature": F.softmax(tempered, dim=-1)[0].cpu(), "sampled": sampled[0].cpu()}


def next_char_distribution(model: nn.Module, tokenizer: CharTokenizer, prompt: str,
                           k: int = 15) -> list[tuple[str, float]]:
    """The ``k`` most likely next characters after the prompt, with their probabilities."""
    if not prompt:
        raise TinyLMError("the prompt is empty; give one with --prompt, e.g. --prompt 'ROMEO:'")
    if not 1 <= k <= tokenizer.vocab_size:  # 0 would draw an empty chart, a negative k fails in torch.topk
        raise TinyLMError(f"--top-k must be in 1..{tokenizer.vocab_size} (the vocabulary size), got {k}")
    return next_token_probabilities(unwrap(model), tokenizer, prompt, k)


def embedding_table(model: nn.Module) -> torch.Tensor:
    """(V, C) one learned vector per character (the bigram model's vectors are its table rows)."""
    model = unwrap(model)
    if isinstance(model, BigramModel):
        return model.token_embedding_table.weight
    return _require(model, GPT, "embeddings").token_embedding.weight


@torch.no_grad()
def embedding_pca(model: nn.Module) -> torch.Tensor:
    """(V, 2): each character's embedding projected on the two directions of largest variance."""
    vectors = embedding_table(model).detach().float().cpu()  # (V, C)
    centered = vectors - vectors.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centered, full_matrices=False)  # rows of vh: principal directions
    return centered @ vh[:2].T  # (V, 2)


def char_label(ch: str) -> str:
    """A character as a readable plot label (matplotlib treats ``$`` as maths)."""
    return {"\n": "\\n", " ": "sp", "$": r"\$"}.get(ch, ch)
