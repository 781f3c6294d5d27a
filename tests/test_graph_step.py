"""CUDA-graphed training steps (``cuda_graph=true``). What a graph needs runs on the CPU too: learning
rates held in device tensors train exactly like floats, a checkpoint keeps plain floats, and without a
GPU the option is ignored with one line. The recording itself is checked where CUDA is available."""

import contextlib

import pytest
import torch

from conftest import TINY
from tinylm.config import load_config
from tinylm.errors import ConfigError
from tinylm.training.graph_step import GraphedStep, portable_optimizer_state, use_device_lrs
from tinylm.training.run import build_trainer, prepare_corpus, train_run

MUON = TINY + ["max_iters=12", "eval_interval=100", "optimizer=muon", "learning_rate=1e-2", "muon_lr=0.02",
               "lr_schedule=linear", "warmup_iters=3", "weight_decay=0.1", "grad_clip=1.0", "dropout=0.0"]


def trained_losses(cfg, device_lrs: bool) -> list[float]:
    trainer = build_trainer(cfg, prepare_corpus(cfg), None, progress=False, log=lambda _: None)
    if device_lrs:
        use_device_lrs(trainer.optimizer, trainer.device)
    trainer.run_steps(cfg.train.max_iters)
    trainer.sync_losses()
    return trainer.train_losses


def test_learning_rates_in_tensors_train_like_floats(small_text):
    """The schedule fills tensors in place instead of assigning floats; Muon and AdamW read them."""
    cfg = load_config(overrides=MUON + [f"data={small_text}"])
    floats, tensors = trained_losses(cfg, False), trained_losses(cfg, True)
    assert len(floats) == 12
    torch.testing.assert_close(torch.tensor(tensors), torch.tensor(floats), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_checkpoints_keep_float_learning_rates(small_text, optimizer):
    cfg = load_config(overrides=MUON + [f"data={small_text}", f"optimizer={optimizer}"])
    trainer = build_trainer(cfg, prepare_corpus(cfg), None, progress=False, log=lambda _: None)
    use_device_lrs(trainer.optimizer, trainer.device)
    trainer.run_steps(2)
    saved = trainer.state_dict()["optimizer"]
    groups = [g for opt in saved.get("optimizers", [saved]) for g in opt["param_groups"]]
    assert isinstance(trainer.optimizer.param_groups[0]["lr"], torch.Tensor)  # the live groups keep their tensors
    assert all(type(g["lr"]) is float and not g.get("capturable", False) for g in groups)
    assert portable_optimizer_state(saved) == saved  # already portable: nothing left to change


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where no GPU is present")
def test_without_a_gpu_the_option_is_ignored_with_one_line(small_text):
    said = []
    graphed = train_run(load_config(overrides=MUON + [f"data={small_text}", "cuda_graph=true"]), None,
                        progress=False, log=said.append)
    plain = train_run(load_config(overrides=MUON + [f"data={small_text}"]), None, progress=False, log=lambda _: None)
    assert graphed.trainer.train_losses == plain.trainer.train_losses
    assert [line for line in said if "cuda_graph" in line] == [
        "cuda_graph: ignored on cpu (it needs one CUDA device); training without a graph"]


def test_the_option_is_a_bool():
    with pytest.raises(ConfigError, match="cuda_graph"):
        load_config(overrides=["cuda_graph=maybe"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_graphed_run_follows_the_eager_one(small_text, optimizer):
    """Without dropout the replayed steps compute what eager steps compute: the same losses, to rounding."""
    overrides = MUON + [f"data={small_text}", f"optimizer={optimizer}", "max_iters=20", "device=cuda"]
    said = []
    graphed = train_run(load_config(overrides=overrides + ["cuda_graph=true"]), None, progress=False, log=said.append)
    eager = train_run(load_config(overrides=overrides), None, progress=False, log=lambda _: None)
    assert graphed.trainer.graphed.graph is not None, said
    torch.testing.assert_close(torch.tensor(graphed.trainer.train_losses),
                               torch.tensor(eager.trainer.train_losses), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_rehearsed_run_equals_one_that_was_not(small_text, optimizer):
    """Throwaway steps (what compiles and records before a benchmark's clock) leave no trace: the same
    losses and weights to the bit, dropout and data order included."""
    cfg = load_config(overrides=MUON + [f"data={small_text}", f"optimizer={optimizer}", "dropout=0.1"])
    runs = []
    for rehearsal in (0, 3):
        trainer = build_trainer(cfg, prepare_corpus(cfg), None, progress=False, log=lambda _: None)
        trainer.rehearse(rehearsal)
        trainer.run_steps(8)
        trainer.sync_losses()
        runs.append((trainer.train_losses, trainer.model.state_dict()))
    (plain_losses, plain_weights), (losses, weights) = runs
    assert losses == plain_losses and len(losses) == 8
    assert all(torch.equal(weights[name], plain_weights[name]) for name in plain_weights)


class _NoStream:
    """Stands in for a CUDA stream on the CPU: ordering is already sequential there."""

    def __init__(self, *args, **kwargs): ...

    def wait_stream(self, other) -> None: ...


def test_a_failed_recording_says_why_in_one_line_and_trains_on(small_text, monkeypatch):
    """Recording can fail on a GPU (an op that syncs the host, say). Simulated on the CPU: the step
    falls back to eager steps with one line, and the run still trains as an eager run does."""
    def refuse_to_record(graph):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(torch.cuda, "Stream", _NoStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _NoStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", object)
    monkeypatch.setattr(torch.cuda, "graph", refuse_to_record)
    cfg = load_config(overrides=MUON + [f"data={small_text}", "device=cpu"])
    said = []
    trainer = build_trainer(cfg, prepare_corpus(cfg), None, progress=False, log=said.append)
    trainer.graphed = GraphedStep(trainer._update, trainer.optimizer, trainer.device, said.append)
    trainer.run_steps(cfg.train.max_iters)
    trainer.sync_losses()
    assert said == ["cuda_graph: recording the training step failed (operation not permitted when stream is "
                    "capturing); training on without a graph"]
    assert trainer.graphed.failed and trainer.graphed.graph is None and trainer.graphed.eager_steps == 12
    torch.testing.assert_close(torch.tensor(trainer.train_losses), torch.tensor(trained_losses(cfg, False)),
                               rtol=1e-4, atol=1e-4)
