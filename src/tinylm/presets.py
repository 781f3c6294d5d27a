"""Named configurations: the notebook's three models and nanoGPT's two character-level configs.

A preset is a flat mapping of config keys (see ``tinylm.config``); ``tinylm train --preset NAME``
applies it on top of the defaults, and ``--set key=value`` can still change any key.
"""

# The notebook's hyperparameters: batch 32, block 16, AdamW at a constant lr 3e-3 with torch's
# default weight decay 0.01, evaluated every 500 steps; PyTorch's default weight init, as there.
_NOTEBOOK = {"batch_size": 32, "block_size": 16, "learning_rate": 3e-3, "weight_decay": 0.01,
             "eval_interval": 500, "init": "pytorch"}

# nanoGPT's config/train_shakespeare_char.py, field for field.
_NANOGPT_CHAR = {
    "init": "gpt2", "n_layer": 6, "n_heads": 6, "n_embed": 384, "block_size": 256, "batch_size": 64,
    "dropout": 0.2, "learning_rate": 1e-3, "lr_schedule": "cosine", "min_lr": 1e-4,
    "max_iters": 5000, "lr_decay_iters": 5000, "warmup_iters": 100, "beta2": 0.99,
    "weight_decay": 0.1, "grad_clip": 1.0, "eval_interval": 250, "eval_iters": 200,
}

PRESETS: dict[str, dict] = {
    "bigram": {**_NOTEBOOK, "kind": "bigram", "max_iters": 4001},
    "attention-1": {**_NOTEBOOK, "n_embed": 64, "n_heads": 4, "n_layer": 1, "dropout": 0.1, "max_iters": 4001},
    "attention-3": {**_NOTEBOOK, "n_embed": 192, "n_heads": 3, "n_layer": 3, "dropout": 0.1, "max_iters": 8001},
    "nanogpt-char": _NANOGPT_CHAR,
    # nanoGPT's README command for a laptop CPU: the same recipe, scaled down.
    "cpu-small": {
        **_NANOGPT_CHAR, "n_layer": 4, "n_heads": 4, "n_embed": 128, "block_size": 64,
        "batch_size": 12, "max_iters": 2000, "lr_decay_iters": 2000, "dropout": 0.0, "eval_iters": 20,
    },
}
