"""``--format onnx``: ``model.onnx`` (input ``input_ids`` (B, T) -> ``logits`` (B, T, V)) + config and tokenizer.

    write(model, tokenizer, cfg, ckpt, Path("exports/a1-onnx"))
    onnxruntime.InferenceSession("exports/a1-onnx/model.onnx").run(["logits"], {"input_ids": ids})

Exported with ``torch.onnx.export``; batch and sequence are dynamic axes (the sequence up to
block_size, the model's limit; static for block_size 1). tinylm's ``config.json`` and
``tokenizer.json`` sit beside it, so a reader knows the vocabulary and the context length.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from tinylm.config import RunConfig
from tinylm.data import Tokenizer
from tinylm.training.rundir import CONFIG_NAME, TOKENIZER_NAME

ONNX_NAME = "model.onnx"


class LogitsOnly(nn.Module):
    """The model's forward without targets or cache: idx (B, T) -> logits (B, T, V)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)[0]


def check(cfg: RunConfig, tokenizer: Tokenizer) -> None:
    """Every tinylm model traces to ONNX: nothing to refuse."""


def write(model, tokenizer: Tokenizer, cfg: RunConfig, ckpt: dict, out: Path) -> None:
    T = min(8, cfg.model.block_size)  # an example shape; both axes stay dynamic, but see seq
    example = torch.zeros((2, T), dtype=torch.long)
    # A Dim needs a range (min < max): with block_size 1 the sequence can only be 1, so it is static.
    seq = torch.export.Dim("sequence", min=1, max=cfg.model.block_size) if cfg.model.block_size > 1 else None
    batch = torch.export.Dim("batch", min=1)
    with quiet_exporter():
        torch.onnx.export(LogitsOnly(model).eval(), (example,), str(out / ONNX_NAME), input_names=["input_ids"],
                          output_names=["logits"], dynamic_shapes={"idx": {0: batch, 1: seq}}, dynamo=True,
                          external_data=False, verbose=False)
    (out / CONFIG_NAME).write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    tokenizer.save(out / TOKENIZER_NAME)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Hide the exporter's warnings about ops this model does not use (torchvision's, deprecations)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
