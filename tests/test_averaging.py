"""Weight averaging (EMA, mean of the last K checkpoints) and ensembles of runs."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import TINY
from tinylm.config import load_config
from tinylm.errors import ConfigError
from tinylm.evaluate import exact_loss
from tinylm.model.ensemble import Ensemble
from tinylm.training.averaging import AverageLastCheckpoints, WeightEMA
from tinylm.training.run import train_run
from tinylm.training.rundir import load_checkpoint, load_run

QUIET = {"progress": False, "log": lambda _: None}


def toy_trainer(value: float) -> SimpleNamespace:
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, value)
    return SimpleNamespace(model=model, step=0, evaluator=SimpleNamespace(estimate=dict))


def set_weight(trainer, value: float) -> None:
    with torch.no_grad():
        trainer.model.weight.fill_(value)


def test_ema_follows_its_formula_with_the_warmup_on_a_toy():
    trainer, ema = toy_trainer(0.0), WeightEMA(0.9)
    ema.on_train_begin(trainer)
    expected = 0.0
    for t, w in enumerate([1.0, 2.0, 4.0, 8.0, 16.0] + [1.0] * 30):
        set_weight(trainer, w)
        trainer.step = t + 1
        ema.on_step(trainer, torch.tensor(0.0))
        d = min(0.9, (1 + t) / (10 + t))  # 0.1, 0.18, ... then capped at 0.9
        expected = d * expected + (1 - d) * w
        assert ema.ema["weight"].item() == pytest.approx(expected, rel=1e-6)
    with ema.swapped_in():  # evaluations see the EMA, then the raw weights come back
        assert trainer.model.weight.item() == pytest.approx(expected, rel=1e-6)
    assert trainer.model.weight.item() == 1.0


@pytest.mark.parametrize("k, evaluated, end_step, expected", [
    (3, [1.0, 2.0, 4.0], 16, (2.0 + 4.0 + 9.0) / 3),  # the last k - 1 evaluations and the end
    (6, [1.0, 2.0, 4.0], 16, (1.0 + 2.0 + 4.0 + 9.0) / 4),  # fewer than k - 1: all of them, none dropped
    (3, [1.0, 2.0, 9.0], 15, (1.0 + 2.0 + 9.0) / 3),  # stopped at its last evaluation: those weights count once
])
def test_average_last_k_is_the_mean_of_the_last_evaluations_and_the_end(k, evaluated, end_step, expected):
    trainer, averager = toy_trainer(0.0), AverageLastCheckpoints(k)
    for step, w in zip([0, 5, 10, 15], [100.0] + evaluated):  # the step-0 init is never kept
        trainer.step = step
        set_weight(trainer, w)
        averager.on_eval(trainer, {})
    trainer.step = end_step
    set_weight(trainer, 9.0)
    averager.on_train_end(trainer)
    assert averager.averaged["weight"].item() == pytest.approx(expected)


def test_averaging_is_off_by_default_and_keys_are_validated():
    cfg = load_config()
    assert cfg.train.ema_decay == 0.0 and cfg.train.average_last == 0
    for bad in (["ema_decay=1.0"], ["average_last=-1"], ["ema_decay=0.9", "average_last=2"]):
        with pytest.raises(ConfigError):
            load_config(overrides=bad)


def tiny_config(text_path, *extra):
    return load_config(overrides=TINY + [f"data={text_path}", "eval_interval=5", *extra])


@pytest.mark.slow
def test_ema_run_saves_the_ema_and_resumes_bit_for_bit(small_text, tmp_path):
    full = train_run(tiny_config(small_text, "max_iters=20", "ema_decay=0.9"), tmp_path / "full", **QUIET)
    train_run(tiny_config(small_text, "max_iters=12", "ema_decay=0.9"), tmp_path / "split", **QUIET)
    resumed = train_run(tiny_config(small_text, "max_iters=20", "ema_decay=0.9"), tmp_path / "split", resume=True,
                        **QUIET)
    assert resumed.trainer.train_losses == full.trainer.train_losses
    a, b = load_checkpoint(tmp_path / "full" / "ckpt.pt"), load_checkpoint(tmp_path / "split" / "ckpt.pt")
    for key in ("model", "train_weights"):  # the EMA and the raw weights, both identical after the resume
        assert all(torch.equal(w, b[key][k]) for k, w in a[key].items())
    assert not torch.equal(a["model"]["head.weight"], a["train_weights"]["head.weight"])
    model, _, _, _ = load_run(tmp_path / "full")  # what eval/sample/serve load: the EMA
    assert torch.equal(model.head.weight, a["model"]["head.weight"])
    assert torch.equal(full.trainer.model.head.weight, a["model"]["head.weight"])  # in memory too
    val = full.final["val_loss"]
    assert val == full.trainer.metrics[-1]["val_loss"] and val < 4.2  # the estimate scored the EMA


@pytest.mark.slow
def test_ensemble_of_a_run_with_itself_equals_the_run(small_text, tmp_path, cli):
    train_run(tiny_config(small_text, "max_iters=10"), tmp_path / "r", **QUIET)
    model, _, _, _ = load_run(tmp_path / "r")
    data = torch.randint(0, model.vocab_size, (200,))
    assert exact_loss(Ensemble([model, model]), data) == pytest.approx(exact_loss(model, data), abs=1e-5)
    single = cli("eval", "--run", str(tmp_path / "r"), "--data", str(small_text))
    double = cli("eval", "--ensemble", str(tmp_path / "r"), str(tmp_path / "r"), "--data", str(small_text))
    assert single.returncode == 0 and double.returncode == 0, double.stderr
    loss = [line.split("(loss ")[1].split(",")[0] for line in single.stdout.splitlines()]
    assert loss == [line.split("(loss ")[1].split(",")[0] for line in double.stdout.splitlines()]
    assert "step 10+10" in double.stdout


@pytest.mark.slow
@pytest.mark.parametrize("averaging", ["ema_decay=0.9", "average_last=2"])
def test_train_cli_with_averaging_scores_the_saved_weights_and_writes_its_card(averaging, small_text, tmp_path, cli):
    """The final val loss `tinylm train` prints is the one `tinylm eval` gives the saved (averaged) weights."""
    run = tmp_path / "r"
    sets = [arg for item in TINY + ["max_iters=10", "eval_interval=5", averaging] for arg in ("--set", item)]
    done = cli("train", *sets, "--data", str(small_text), "--out", str(run), "--device", "cpu", "--quiet",
               "--sample-chars", "20")
    assert done.returncode == 0, done.stderr
    assert (run / "report.md").is_file()
    trained = done.stdout.split("val perplexity (full split")[1].split("(loss ")[1].split(")")[0]
    evaluated = cli("eval", "--run", str(run), "--data", str(small_text), "--device", "cpu")
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.split("val perplexity:")[1].split("(loss ")[1].split(",")[0] == trained
