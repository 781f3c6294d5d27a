"""A new run that starts from another run's weights: fine-tuning, or branching a run with new settings.

    cfg = finetune_config("runs/base", overrides=["data=notes.txt", "max_iters=300", "learning_rate=3e-4"])
    train_run(cfg, "runs/notes")        # step 0 has runs/base's weights; optimizer and schedule start fresh

The new run takes the source's config (a run directory's, or an export's from ``tinylm export --format
safetensors``), and the options go on top, as ``--resume`` does; its tokenizer is the source's. A run
saved with weight averaging gives its averaged weights, the ones it was evaluated with. Options may
change ``dropout`` and any training key (the data, the steps, the learning rate); a model key that
changes is refused, since the weights would not fit. The source is read once, at the start: a
resumed fine-tune continues from its own checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from tinylm.config import RunConfig, load_config
from tinylm.data import Tokenizer
from tinylm.errors import ConfigError
from tinylm.training.rundir import load_run


def finetune_config(source: str | Path, preset: str | None = None, file: str | Path | None = None,
                    json_text: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """The source's config, then the options on top (in load_config's order), and ``init_from``."""
    saved = load_run(source)[2]
    cfg = load_config(preset, file, json_text, [*(overrides or []), f"init_from={source}"], base=saved)
    refuse_model_changes(saved, cfg, f"--init-from {source} starts from that run's weights, so the model keys "
                                     "must stay its own; drop those options (dropout may change)")
    return cfg


def refuse_model_changes(saved: RunConfig, cfg: RunConfig, why: str) -> None:
    """The saved weights fit only the saved model keys; dropout alone changes neither shapes nor meaning."""
    before, after = dataclasses.asdict(saved.model), dataclasses.asdict(cfg.model)
    changed = [f"{key} {before[key]} -> {after[key]}" for key in before
               if before[key] != after[key] and key != "dropout"]
    if changed:
        raise ConfigError(f"the options change the model ({', '.join(changed)}), but {why}")


def source_weights(cfg: RunConfig) -> tuple[dict[str, torch.Tensor], Tokenizer]:
    """The weights and tokenizer a new run starts from (``cfg.train.init_from``), checked against its model."""
    model, tokenizer, saved, _ = load_run(cfg.train.init_from)
    refuse_model_changes(saved, cfg, f"init_from {cfg.train.init_from} holds weights of another shape; build the "
                                     "config with finetune_config (or tinylm train --init-from)")
    return model.state_dict(), tokenizer
