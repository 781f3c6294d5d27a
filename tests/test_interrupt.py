"""Killing a run at any moment leaves a loadable checkpoint and a run that resumes."""

import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY
from tinylm.training.rundir import load_run


def start_training(run_dir, text):
    sets = [a for item in TINY + ["max_iters=100000", "eval_interval=1", "eval_iters=1"] for a in ("--set", item)]
    return subprocess.Popen([sys.executable, "-m", "tinylm", "train", *sets, "--data", str(text),
                             "--out", str(run_dir), "--quiet", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoints(run_dir, proc, count=5, timeout=120):
    """Wait until the run has written checkpoints for a few steps (one per step here)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training exited early: {proc.stderr.read()}")
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    pytest.fail("training wrote no checkpoints in time")


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.13, 0.31])
def test_sigkill_mid_run_leaves_a_loadable_checkpoint_that_resumes(tmp_path, small_text, cli, delay):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir, small_text)
    wait_for_checkpoints(run_dir, proc)
    time.sleep(delay)  # land the kill at different points of the save cycle
    proc.kill()
    proc.wait()
    _, _, _, ckpt = load_run(run_dir)
    step = ckpt["step"]
    done = cli("train", "--out", str(run_dir), "--resume", "--set", f"max_iters={step + 3}", "--quiet",
               "--sample-chars", "0")
    assert done.returncode == 0, done.stderr
    assert load_run(run_dir)[3]["step"] == step + 3


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.13, 0.31])
def test_ctrl_c_exits_130_with_a_message_and_an_intact_checkpoint(tmp_path, small_text, delay):
    run_dir = tmp_path / "run"
    proc = start_training(run_dir, small_text)
    wait_for_checkpoints(run_dir, proc)
    time.sleep(delay)  # checkpoints are written every step here, so some of these land mid-save
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr
    load_run(run_dir)


def test_ctrl_c_during_the_checkpoint_write_keeps_metrics_in_step_with_the_checkpoint(tmp_path, monkeypatch):
    import json

    import torch

    from tinylm.training.rundir import RunDir

    run = RunDir(tmp_path)
    first = [{"step": 0, "val_loss": 4.0}]
    run.save({"step": 0, "metrics": first}, first)
    real_save = torch.save

    def save_then_ctrl_c(obj, f):
        signal.raise_signal(signal.SIGINT)  # lands mid-write: atomic_write holds it until ckpt.pt is in place
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", save_then_ctrl_c)
    both = first + [{"step": 5, "val_loss": 3.0}]
    with pytest.raises(KeyboardInterrupt):
        run.save({"step": 5, "metrics": both}, both)
    monkeypatch.undo()
    saved = torch.load(run.checkpoint, weights_only=True)
    lines = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert saved["step"] == 5 and lines == saved["metrics"] == both
