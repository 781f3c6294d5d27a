import math
import time

import pytest
import torch

from conftest import TINY
from tinylm.config import load_config
from tinylm.optim import LRSchedule
from tinylm.training.run import train_run
from tinylm.training.rundir import load_checkpoint

QUIET = {"progress": False, "log": lambda _: None}


def tiny_config(text_path, *extra):
    return load_config(overrides=TINY + [f"data={text_path}", "dropout=0.1", "eval_interval=5", *extra])


def weights(result):
    return result.trainer.model.state_dict()


def test_same_seed_gives_bitwise_equal_weights(small_text):
    a = train_run(tiny_config(small_text, "max_iters=15"), None, **QUIET)
    b = train_run(tiny_config(small_text, "max_iters=15"), None, **QUIET)
    assert all(torch.equal(a_w, weights(b)[k]) for k, a_w in weights(a).items())
    c = train_run(tiny_config(small_text, "max_iters=15", "seed=2"), None, **QUIET)
    assert not torch.equal(weights(a)["head.weight"], weights(c)["head.weight"])


def test_resumed_run_equals_an_uninterrupted_one_step_for_step(small_text, tmp_path):
    schedule = ["lr_schedule=cosine", "warmup_iters=3", "lr_decay_iters=20", "min_lr=1e-4"]
    full = train_run(tiny_config(small_text, "max_iters=20", *schedule), tmp_path / "full", **QUIET)
    train_run(tiny_config(small_text, "max_iters=12", *schedule), tmp_path / "split", **QUIET)
    time.sleep(1.0)  # the run is stopped: its clock ("elapsed") must not count this
    resumed = train_run(tiny_config(small_text, "max_iters=20", *schedule), tmp_path / "split", resume=True, **QUIET)
    assert resumed.trainer.train_losses == full.trainer.train_losses  # exact floats, every step
    assert all(torch.equal(w, weights(resumed)[k]) for k, w in weights(full).items())
    metrics = resumed.trainer.metrics
    assert [m["step"] for m in metrics] == [0, 5, 10, 11, 15, 19]
    stopped, again = metrics[3], metrics[4]  # the last evaluation before the stop, the first after it
    paused = (again["time"] - stopped["time"]) - (again["elapsed"] - stopped["elapsed"])  # the clock left out
    assert again["elapsed"] > stopped["elapsed"] and paused > 0.95  # the 1 s sleep, and the restart, at least


def test_bfloat16_on_cpu_says_in_one_line_that_it_trains_in_float32(small_text):
    lines = []
    cfg = tiny_config(small_text, "max_iters=1", "dtype=bfloat16", "device=cpu")
    train_run(cfg, None, progress=False, log=lines.append)
    said = [line for line in lines if line.startswith("dtype bfloat16")]
    assert said == ["dtype bfloat16: ignored on cpu (autocast is used on CUDA only); training in float32"]


def test_step_losses_are_read_every_loss_sync_steps_without_an_evaluation(small_text):
    """Unread step losses stay bounded (they fragmented the heap: +0.5 MB per step before)."""
    from tinylm.training.trainer import LOSS_SYNC_STEPS

    steps = LOSS_SYNC_STEPS + 30
    result = train_run(tiny_config(small_text, f"max_iters={steps}", "eval_interval=100000"), None, **QUIET)
    trainer = result.trainer
    assert len(trainer.train_losses) == steps  # every step's loss, in order, once the run ends
    trainer.run_steps(LOSS_SYNC_STEPS - 1)  # no evaluation: the losses wait on the device...
    assert len(trainer._pending_losses) == LOSS_SYNC_STEPS - 1
    trainer.run_steps(1)  # ...until there are LOSS_SYNC_STEPS of them
    assert not trainer._pending_losses and len(trainer.train_losses) == steps + LOSS_SYNC_STEPS


def test_loss_goes_down_and_metrics_are_logged(small_text, tmp_path):
    result = train_run(tiny_config(small_text, "max_iters=60", "learning_rate=1e-2"), tmp_path / "r", **QUIET)
    first, last = result.trainer.metrics[0], result.trainer.metrics[-1]
    assert first["val_loss"] > last["val_loss"] + 0.5
    assert set(first) >= {"step", "train_loss", "val_loss", "train_perplexity", "val_perplexity", "lr"}
    assert math.isclose(last["val_perplexity"], math.exp(last["val_loss"]))


def test_early_stop_at_the_target_val_loss_keeps_a_checkpoint(small_text, tmp_path):
    result = train_run(tiny_config(small_text, "max_iters=500", "learning_rate=1e-2", "target_val_loss=2.5"),
                       tmp_path / "r", **QUIET)
    assert result.final["val_loss"] <= 2.5 and result.trainer.step < 500
    assert load_checkpoint(tmp_path / "r" / "ckpt.pt")["metrics"][-1]["val_loss"] <= 2.5


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    cosine = LRSchedule(1e-3, "cosine", warmup_iters=10, decay_iters=110, min_lr=1e-4)
    assert cosine(0) == pytest.approx(1e-4) and cosine(9) == pytest.approx(1e-3)
    assert cosine(60) == pytest.approx(5.5e-4)
    assert cosine(110) == pytest.approx(1e-4) and cosine(500) == pytest.approx(1e-4)
    linear = LRSchedule(1e-3, "linear", warmup_iters=0, decay_iters=100, min_lr=0.0)
    assert linear(50) == pytest.approx(5e-4)
    assert LRSchedule(3e-3)(1234) == 3e-3


def test_linear_schedule_with_a_warmdown_holds_the_peak_then_decays_over_the_last_steps():
    wsd = LRSchedule(1e-3, "linear", warmup_iters=10, decay_iters=100, min_lr=0.0, warmdown_iters=40)
    assert wsd(9) == pytest.approx(1e-3) and wsd(60) == pytest.approx(1e-3)  # stable until step 60
    assert wsd(80) == pytest.approx(5e-4) and wsd(100) == pytest.approx(0.0)


# A short golden loss curve: tiny model, small corpus, CPU fp32, seed 1337. These numbers were
# measured once with this code; a change that moves them changed the training math.
GOLDEN_TRAIN_LOSSES = [3.5002, 3.428, 3.3204, 3.258, 3.2087, 3.1738, 3.0993, 3.0502, 2.9605, 2.9292]


def test_golden_loss_curve(small_text):
    result = train_run(tiny_config(small_text, "max_iters=10", "dropout=0.0"), None, **QUIET)
    assert result.trainer.train_losses == pytest.approx(GOLDEN_TRAIN_LOSSES, abs=2e-4)


def test_schedule_refuses_a_misspelled_kind_and_settings_it_would_ignore():
    from tinylm.errors import ConfigError

    with pytest.raises(ConfigError, match="cosine"):
        LRSchedule(1e-3, "cosin")
    with pytest.raises(ConfigError, match="do nothing"):
        LRSchedule(1e-3, decay_iters=100)


def test_a_training_that_diverges_ends_in_one_line_suggesting_a_lower_learning_rate(tmp_path, cli):
    """Adam at lr 1e30 makes the weights NaN within a few steps; the run is still saved."""
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 60, encoding="utf-8")
    sets = [a for kv in TINY + ["max_iters=6", "eval_interval=3", "learning_rate=1e30"] for a in ("--set", kv)]
    done = cli("train", *sets, "--data", str(text), "--out", str(tmp_path / "r"), "--quiet", "--device", "cpu")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "NaN or infinite" in done.stderr and "lower learning_rate" in done.stderr
    assert (tmp_path / "r" / "ckpt.pt").is_file()
