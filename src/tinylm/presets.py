"""Named configurations: the notebook's three models and nanoGPT's two character-level configs.

A preset is a flat mapping of config keys (see ``tinylm.config``); ``tinylm train --preset NAME``
applies it on top of the defaults, and ``--set key=value`` can still change any key.
"""

# The notebook's hyperparameters: batch 32, block 16, AdamW at a constant lr 3e-3 with torch's
# default weight decay 0.01, evaluated every 500 steps; PyTorch's default weight init, as there.
_NOTEBOOK = {"batch_size": 32, "block_size": 16, "learning_rate": 3e-3, "weight_decay": 0.01,
             "eval_interval": 500, "init": "pytorch"}

# nanoGPT's config/train_shakespeare_char.py: its hyperparameters, key for key. (nanoGPT's model also
# ties the token embedding to the head; here that is `tie_weights`, left off as in the notebook.)
_NANOGPT_CHAR = {
    "init": "gpt2", "n_layer": 6, "n_heads": 6, "n_embed": 384, "block_size": 256, "batch_size": 64,
    "dropout": 0.2, "learning_rate": 1e-3, "lr_schedule": "cosine", "min_lr": 1e-4,
    "max_iters": 5000, "lr_decay_iters": 5000, "warmup_iters": 100, "beta2": 0.99,
    "weight_decay": 0.1, "grad_clip": 1.0, "eval_interval": 250, "eval_iters": 200,
}

# What makes small GPTs learn faster per step: rotary positions, QK-norm, ReLU², zero-init output
# projections, Muon for the hidden matrices, a short warmup and a linear warmdown (see tinylm.optim).
_FAST_LEARNING = {
    "rope": True, "qk_norm": True, "mlp_activation": "relu2", "zero_init_proj": True,
    "optimizer": "muon", "lr_schedule": "linear", "min_lr": 0.0, "weight_decay": 0.0, "beta2": 0.95,
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
    # cpu-small's shape on byte-level BPE tokens (vocab 1024) of Tiny Shakespeare; prepare the data first:
    # tinylm prepare tinyshakespeare --tokenizer bpe --vocab-size 1024 --out data/shakespeare-bpe1024
    "shakespeare-bpe": {
        **_NANOGPT_CHAR, "n_layer": 4, "n_heads": 4, "n_embed": 128, "block_size": 64,
        "batch_size": 12, "max_iters": 2000, "lr_decay_iters": 2000, "dropout": 0.0, "eval_iters": 20,
        "data": "data/shakespeare-bpe1024",
    },
    # One GPU: nanogpt-char's shape with the fast-learning tricks, bf16 autocast, compiled, the step
    # recorded as a CUDA graph, a linear warmdown that ends at step 700 (no early stop). On an H100
    # (2026-11-26, seeds 1337-1339): 4.9 s of training, full val loss 1.4535 / 1.4560 / 1.4606, 23.2-28.8 s
    # wall once inductor's cache holds the compiled code; the first run on a machine compiles for ~22 s
    # (41.4 s wall). Not compiled, graphed: 13.5 s of training, 25.9-30.6 s wall (benchmarks/RESULTS.md).
    "speedrun": {
        **_NANOGPT_CHAR, **_FAST_LEARNING, "dropout": 0.2, "learning_rate": 3e-3, "muon_lr": 0.02,
        "warmup_iters": 50, "max_iters": 700, "lr_decay_iters": 700, "eval_interval": 100,
        "eval_iters": 10, "compile": True, "cuda_graph": True,
    },
    # The 2-core CPU: val loss <= 1.65 on the full val split within 60 s of wall time (the 60 s track of
    # benchmarks/speedrun.py). At this budget (~2.5 M tokens) a shallow, narrow model wins: measured side
    # by side (benchmarks/budget.py), 2 layers x 80 beat 1-6 layers and widths 64-128; Muon momentum
    # 0.85-0.9 beat 0.95. Warmup-stable-decay. 600 steps gave 1.699; 1200 give 1.641 (median of 3 seeds)
    # in 34 s on the quiet VM, with room for it to run ~1.8x slower.
    "cpu-speedrun": {
        **_NANOGPT_CHAR, **_FAST_LEARNING, "n_layer": 2, "n_heads": 4, "n_embed": 80, "block_size": 64,
        "batch_size": 32, "dropout": 0.0, "learning_rate": 1.2e-2, "beta2": 0.99, "grad_clip": 0.0,
        "muon_lr": 0.015, "muon_momentum": 0.85, "warmup_iters": 30, "max_iters": 1200, "lr_decay_iters": 1200,
        "warmdown_iters": 480, "eval_interval": 10000, "eval_iters": 4,
    },
    # The 2-core CPU, 10 minutes: val loss <= 1.55 (moonshot 1.50) on the full val split within 600 s of
    # wall time (benchmarks/speedrun.py --track 10min). 4 x 128 with cpu-speedrun's tricks and a 40%
    # warmdown. At ~280 s of training a longer context beat a wider or deeper model (budget.py, side by
    # side): block 256 x batch 8 gave 1.494, block 128 x 16 1.502, block 64 x 32 1.510, 4 x 192 1.519,
    # 6 x 192 1.529. 3 seeds: median 1.4948 in 272.8 s wall on the quiet VM, ~2.2x headroom. The first
    # version (block 64 x 32, 1500 steps) gave 1.5363 in 144.5 s.
    "cpu-10min": {
        **_NANOGPT_CHAR, **_FAST_LEARNING, "n_layer": 4, "n_heads": 4, "n_embed": 128, "block_size": 256,
        "batch_size": 8, "dropout": 0.0, "learning_rate": 8e-3, "beta2": 0.99, "grad_clip": 0.0,
        "muon_lr": 0.02, "muon_momentum": 0.9, "warmup_iters": 30, "max_iters": 2400, "lr_decay_iters": 2400,
        "warmdown_iters": 960, "eval_interval": 10000, "eval_iters": 4,
    },
}
