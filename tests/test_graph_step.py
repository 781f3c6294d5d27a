"""CUDA-graphed training steps (``cuda_graph=true``). What a graph needs runs on the CPU too: learning
rates held in device tensors train exactly like floats, a checkpoint keeps plain floats, and without a
GPU the option is ignored with one line. The recording itself is checked where CUDA is available."""

import contextlib

import pytest
import torch

from conftest import TINY
from tinylm.config import load_config
from tinylm.errors import ConfigError
from tinylm.training import graph_step
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


class _Generator:
    """Stands in for the CUDA generator on the CPU: records that its state was put back."""

    def __init__(self):
        self.restored = []

    def clone_state(self):
        return "state before recording"

    def graphsafe_set_state(self, state) -> None:
        self.restored.append(state)


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
    generator = _Generator()
    monkeypatch.setattr(graph_step, "cuda_generator", lambda device: generator)
    cfg = load_config(overrides=MUON + [f"data={small_text}", "device=cpu"])
    said = []
    trainer = build_trainer(cfg, prepare_corpus(cfg), None, progress=False, log=said.append)
    trainer.graphed = GraphedStep(trainer._update, trainer.optimizer, trainer.device, said.append)
    trainer.run_steps(cfg.train.max_iters)
    trainer.sync_losses()
    assert said == ["cuda_graph: recording the training step failed (operation not permitted when stream is "
                    "capturing); training on without a graph"]
    assert trainer.graphed.failed and trainer.graphed.graph is None and trainer.graphed.eager_steps == 12
    assert generator.restored == ["state before recording"]
    torch.testing.assert_close(torch.tensor(trainer.train_losses), torch.tensor(trained_losses(cfg, False)),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real failed capture needs a CUDA GPU")
def test_after_a_real_failed_recording_dropout_still_draws(small_text):
    """A capture that CUDA itself aborts (here a host sync inside the step) leaves the generator in
    capture mode, and every later random op failed ("Offset increment outside graph capture"). With
    its state put back, the run trains on eagerly, dropout included."""
    cfg = load_config(overrides=MUON + [f"data={small_text}", "device=cuda", "dropout=0.1", "cuda_graph=true"])
    said = []
    trainer = build_trainer(cfg, prepare_corpus(cfg), None, progress=False, log=said.append)
    update = trainer.graphed.update

    def syncs_while_capturing(batches):
        loss = update(batches)
        if torch.cuda.is_current_stream_capturing():
            loss.item()  # not allowed during a capture: CUDA invalidates it
        return loss

    trainer.graphed.update = syncs_while_capturing
    trainer.run_steps(cfg.train.max_iters)
    trainer.sync_losses()
    assert trainer.graphed.failed and len(trainer.train_losses) == cfg.train.max_iters, said
    assert any("recording the training step failed" in line for line in said)
    assert torch.rand(3, device="cuda").shape == (3,)


def test_recorded_inputs_keep_the_strides_of_the_batches():
    """torch.compile guards on strides: the loader's views of a (B, T + 1) buffer must be recorded as
    such, or the compiled model recompiles inside the capture (seen on an H100: 'idx' stride 257 vs 256)."""
    buffer = torch.arange(2 * 9).view(2, 9)
    x, y = buffer[:, :-1], buffer[:, 1:]  # (B, T) views, row stride T + 1
    for view in (x, y):
        copy = graph_step.same_layout_copy(view)
        assert copy.stride() == view.stride() and torch.equal(copy, view)
        assert copy.data_ptr() != view.data_ptr()


def test_a_recompile_while_recording_raises_and_names_the_guard():
    """Compiling cannot be recorded: inside ``no_recompiling`` a compiled function that would compile
    again raises instead, and the one-line reason names the guard (the H100's first failure was a
    recompile for a stride, reported only as "backend='inductor' raised")."""
    import torch._dynamo  # noqa: F401  (what a compiled run has imported)

    double = torch.compile(lambda x: x * 2, backend="eager")
    buffer = torch.randn(4, 9)
    double(buffer[:, :-1])  # (4, 8) with row stride 9, as the loader's batches
    with pytest.raises(RuntimeError) as raised, graph_step.no_recompiling():
        double(buffer[:, :-1].clone())  # row stride 8
    assert "stride mismatch" in graph_step.why(raised.value)
    assert graph_step.why(RuntimeError("one line\nmore")) == "one line"
