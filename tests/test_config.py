import json

import pytest

from tinylm.config import RunConfig, load_config
from tinylm.errors import ConfigError
from tinylm.presets import PRESETS

NOTEBOOK_CLOUD_CONFIG = ('{"batch_size": 32, "block_size": 16, "max_iters": 10000, "eval_interval": 500, '
                         '"learning_rate": 1e-4, "n_embed": 64, "n_heads": 4, "n_layer": 1, "dropout": 0.2}')


def test_the_notebooks_cloud_config_is_accepted_verbatim():
    cfg = load_config(json_text=NOTEBOOK_CLOUD_CONFIG)
    t, m = cfg.train, cfg.model
    assert (t.max_iters, t.learning_rate, m.n_embed, m.dropout) == (10000, 1e-4, 64, 0.2)


def test_layers_apply_in_order_preset_file_json_set(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('max_iters = 50\n[model]\nn_layer = 2\n')
    cfg = load_config("attention-3", path, '{"max_iters": 60}', ["max_iters=70", "model.dropout=0.0"])
    assert cfg.model.n_embed == 192 and cfg.model.n_layer == 2
    assert cfg.train.max_iters == 70 and cfg.model.dropout == 0.0


def test_json_file_and_round_trip(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"n_embed": 48, "n_heads": 3, "compile": True}))
    cfg = load_config(file=path)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_set_parses_values_by_the_fields_type():
    cfg = load_config(overrides=["learning_rate=1e-3", "compile=true", "lr_schedule=cosine", "n_layer=3"])
    assert cfg.train.learning_rate == 1e-3 and cfg.train.compile is True
    assert cfg.train.lr_schedule == "cosine" and cfg.model.n_layer == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"json_text": '{"n_embd": 64}'}, "unknown config key 'n_embd'"),
    ({"json_text": '{"max_iters": "100"}'}, "'max_iters' must be int"),
    ({"json_text": '{"max_iters": 1.5}'}, "'max_iters' must be int"),
    ({"json_text": '{"compile": 1}'}, "'compile' must be bool"),
    ({"json_text": '[1, 2]'}, "must be a JSON/TOML object"),
    ({"json_text": '{oops'}, "not valid JSON"),
    ({"json_text": "[" * 100_000}, "not valid JSON"),
    ({"overrides": ["max_iters"]}, "--set expects key=value"),
    ({"overrides": ["max_iters=ten"]}, "'max_iters' must be int"),
    ({"overrides": ["bogus.n_layer=2"]}, "unknown config section"),
    ({"preset": "gpt5"}, "unknown preset 'gpt5'"),
    ({"overrides": ["n_embed=30", "n_heads=4"]}, "divisible by n_heads"),
    ({"overrides": ["learning_rate=0"]}, "learning_rate must be positive"),
    ({"overrides": ["learning_rate=-1e-3"]}, "learning_rate must be positive"),
    ({"overrides": ["max_iters=0"]}, "max_iters must be a positive"),
    ({"overrides": ["batch_size=-2"]}, "batch_size must be a positive"),
    ({"overrides": ["block_size=0"]}, "block_size must be a positive"),
    ({"overrides": ["dropout=1.0"]}, r"dropout must be in \[0, 1\)"),
    ({"overrides": ["dropout=-0.1"]}, r"dropout must be in \[0, 1\)"),
    ({"overrides": ["learning_rate=inf"]}, "'learning_rate' must be a finite number"),
    ({"overrides": ["min_lr=nan"]}, "'min_lr' must be a finite number"),
    ({"json_text": '{"grad_clip": NaN}'}, "'grad_clip' must be a finite number"),
    ({"json_text": "{\"learning_rate\": 1" + "0" * 400 + "}"}, "'learning_rate' must be a finite number"),
    ({"json_text": '{"ema_decay": -Infinity}'}, "'ema_decay' must be a finite number"),
    ({"overrides": ["beta1=1.0"]}, r"beta1 must be in \[0, 1\)"),
    ({"overrides": ["beta2=-0.1"]}, r"beta2 must be in \[0, 1\)"),
    ({"overrides": ["seed=99999999999999999999"]}, r"seed must be in \[0, 2\*\*63 - 1\]"),
    ({"json_text": '{"seed": 99999999999999999999}'}, r"seed must be in \[0, 2\*\*63 - 1\]"),
    ({"overrides": ["seed=-1"]}, r"seed must be in \[0, 2\*\*63 - 1\]"),
    ({"overrides": ["weight_decay=-0.1"]}, "weight_decay must be >= 0"),
    ({"overrides": ["grad_clip=-1"]}, "grad_clip must be >= 0"),
    ({"overrides": ["min_lr=-1e-4"]}, "min_lr must be >= 0"),
    ({"overrides": ["warmup_iters=-1"]}, "warmup_iters must be >= 0"),
    ({"overrides": ["lr_decay_iters=-1"]}, "lr_decay_iters must be >= 0"),
    ({"json_text": '{"model": {"max_iters": 3}}'}, "'max_iters' belongs in section 'train', not 'model'"),
    ({"overrides": ["model.max_iters=3"]}, "'max_iters' belongs in section 'train', not 'model'"),
    ({"json_text": '{"model": 5}'}, "config section 'model' must be a table/object"),
    ({"json_text": '{"train": [1]}'}, "config section 'train' must be a table/object"),
])
def test_bad_configs_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_config(**kwargs)


@pytest.mark.parametrize("suffix", [".toml", ".TOML", ".Toml"])
def test_a_toml_file_is_read_as_toml_whatever_the_suffix_case(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_text('max_iters = 50\n[model]\nn_layer = 2\n')
    cfg = load_config(file=path)
    assert (cfg.train.max_iters, cfg.model.n_layer) == (50, 2)


def test_every_float_key_refuses_nan_and_infinities():
    """NaN passes range checks (every comparison is false), so each float key is checked for it."""
    floats = [k for section in RunConfig().to_dict().values() for k, v in section.items() if isinstance(v, float)]
    for key in floats:
        for value in ("nan", "inf", "-inf"):
            with pytest.raises(ConfigError, match="finite"):
                load_config(overrides=[f"{key}={value}"])


def test_presets_carry_the_exact_published_hyperparameters():
    b, a1, a3 = (load_config(p) for p in ("bigram", "attention-1", "attention-3"))
    assert b.model.kind == "bigram" and b.train.max_iters == 4001
    assert (a1.model.n_embed, a1.model.n_heads, a1.model.n_layer, a1.model.dropout) == (64, 4, 1, 0.1)
    assert (a3.model.n_embed, a3.model.n_heads, a3.model.n_layer, a3.train.max_iters) == (192, 3, 3, 8001)
    for cfg in (b, a1, a3):
        assert (cfg.train.batch_size, cfg.model.block_size, cfg.train.learning_rate) == (32, 16, 3e-3)
        assert cfg.train.eval_interval == 500
    n = load_config("nanogpt-char")
    assert (n.model.n_layer, n.model.n_heads, n.model.n_embed, n.model.block_size) == (6, 6, 384, 256)
    assert (n.train.batch_size, n.model.dropout, n.train.learning_rate, n.train.min_lr) == (64, 0.2, 1e-3, 1e-4)
    assert (n.train.warmup_iters, n.train.beta2, n.train.weight_decay, n.train.grad_clip) == (100, 0.99, 0.1, 1.0)
    c = load_config("cpu-small")
    shape = (c.model.n_layer, c.model.n_embed, c.model.block_size, c.train.batch_size, c.train.max_iters)
    assert shape == (4, 128, 64, 12, 2000)
    assert set(PRESETS) >= {"bigram", "attention-1", "attention-3", "nanogpt-char", "cpu-small"}
