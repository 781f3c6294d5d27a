"""``--format safetensors``: ``model.safetensors`` + tinylm's ``config.json`` and ``tokenizer.json``.

    write(model, tokenizer, cfg, ckpt, Path("exports/a1"))
    tinylm sample --run exports/a1          # load_run reads such a directory

The weights keep tinylm's parameter names; a tied head is stored once (``safetensors.torch.save_model``
drops the alias and ``load_model`` restores it). The step of the run is in the file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinylm.config import RunConfig
from tinylm.data import Tokenizer
from tinylm.training.rundir import CONFIG_NAME, SAFETENSORS_NAME, TOKENIZER_NAME


def check(cfg: RunConfig, tokenizer: Tokenizer) -> None:
    """Every tinylm model has safetensors weights: nothing to refuse."""


def write(model, tokenizer: Tokenizer, cfg: RunConfig, ckpt: dict, out: Path) -> None:
    from safetensors.torch import save_model

    save_model(model, str(out / SAFETENSORS_NAME), metadata={"format": "pt", "step": str(ckpt.get("step", -1))})
    (out / CONFIG_NAME).write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    tokenizer.save(out / TOKENIZER_NAME)
