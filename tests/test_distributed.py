"""DDP with real torchrun (``python -m torch.distributed.run``): 2 CPU processes talking over gloo.

Every run here is a real multi-process job on the tiny config; each costs a few seconds of
interpreter start-up, so the file shares one 2-rank run between tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY
from tinylm.cli import main as tinylm_main
from tinylm.config import load_config
from tinylm.training.distributed import strip_nproc, torchrun_command
from tinylm.training.run import train_run
from tinylm.training.rundir import load_checkpoint

# gloo's teardown is fragile on a loaded 2-core machine; in-process runs use one thread, as torchrun gives each rank
pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.usefixtures("one_thread")]
QUIET = {"progress": False, "log": lambda _: None}
# fp32, no dropout: one rank and two must then differ only by float summation order.
EXACT = ["dropout=0.0", "dtype=float32", "eval_interval=4", "learning_rate=1e-2"]




def options(text_path, *extra: str) -> list[str]:
    sets = [item for key_value in [*TINY, *EXACT, *extra] for item in ("--set", key_value)]
    return ["--data", str(text_path), "--device", "cpu", "--quiet", "--sample-chars", "0", *sets]


def torchrun(nproc: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = torchrun_command(nproc, ["train", *args])
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def single_process(text_path, *extra: str):
    cfg = load_config(overrides=[*TINY, *EXACT, f"data={text_path}", "device=cpu", *extra])
    return train_run(cfg, None, **QUIET).trainer


def assert_same_training(ckpt: dict, trainer, loss_tol: float = 1e-5, weight_tol: float = 1e-4) -> None:
    assert len(ckpt["train_losses"]) == len(trainer.train_losses)
    for step, (a, b) in enumerate(zip(ckpt["train_losses"], trainer.train_losses)):
        assert abs(a - b) <= loss_tol, f"step {step}: 2 ranks {a} vs 1 rank {b}"
    for name, weight in trainer.model.state_dict().items():
        torch.testing.assert_close(ckpt["model"][name], weight, atol=weight_tol, rtol=0)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """8 steps on 2 ranks of batch 4: a global batch of 8."""
    workdir = tmp_path_factory.mktemp("ddp")
    text = workdir / "small.txt"
    text.write_text(("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
                     "All:\nSpeak, speak.\n\n"
                     "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 40)
    out = workdir / "run"
    torchrun(2, *options(text, "batch_size=4", "max_iters=8"), "--out", str(out))
    return text, out


def test_two_ranks_of_half_batch_match_one_rank_of_full_batch(two_rank_run):
    text, out = two_rank_run
    ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt["step"] == 8 and len(ckpt["rng"]["ranks"]) == 2
    assert_same_training(ckpt, single_process(text, "batch_size=8", "max_iters=8"))


def test_checkpoint_of_two_ranks_samples_in_one_process(two_rank_run, capsys):
    _, out = two_rank_run
    assert tinylm_main(["sample", "--run", str(out), "--prompt", "All:", "--max-new-tokens", "40",
                        "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("All:")


def test_two_ranks_accumulating_two_match_one_rank_accumulating_four(two_rank_run, tmp_path):
    text, _ = two_rank_run
    out = tmp_path / "accum"
    result = torchrun(2, *options(text, "batch_size=2", "grad_accum_steps=2", "max_iters=6"), "--out", str(out))
    assert result.stdout.count("step 0:") == 1  # only rank 0 prints
    reference = single_process(text, "batch_size=2", "grad_accum_steps=4", "max_iters=6")
    assert_same_training(load_checkpoint(out / "ckpt.pt"), reference)


def rank_pid(root_pid: int, local_rank: int) -> int | None:
    """The pid of the worker with LOCAL_RANK=local_rank among root_pid's descendants."""
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LOCAL_RANK={local_rank}".encode() in environ and pid != root_pid:
            return pid
        pending.extend(int(child) for child in children)
    return None


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks through Linux /proc")
def test_killing_one_rank_ends_the_job_and_the_run_resumes_exactly(two_rank_run, tmp_path):
    text, _ = two_rank_run
    out = tmp_path / "killed"
    args = options(text, "batch_size=4", "max_iters=100000", "eval_interval=3")
    job = subprocess.Popen([sys.executable, "-m", "tinylm", "train", "--nproc", "2", *args, "--out", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # tinylm starts torchrun
    try:
        metrics = out / "metrics.jsonl"
        wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 2, 180, "2 evaluations")
        os.kill(wait_for(lambda: rank_pid(job.pid, 1), 30, "rank 1"), signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
    assert time.monotonic() - killed_at < 60
    assert job.returncode != 0
    assert "distributed training failed" in stderr and "--resume" in stderr
    step = load_checkpoint(out / "ckpt.pt")["step"]  # the last checkpoint is whole
    assert step >= 3
    torchrun(2, "--out", str(out), "--resume", *options(text, "batch_size=4", f"max_iters={step + 4}"))
    alone = single_process(text, "batch_size=8", f"max_iters={step + 4}")
    assert_same_training(load_checkpoint(out / "ckpt.pt"), alone)


def test_nproc_is_left_out_of_each_ranks_command():
    assert strip_nproc(["train", "--nproc", "2", "--out", "r", "--nproc=3"]) == ["train", "--out", "r"]
    cmd = torchrun_command(2, ["train", "--nproc", "2", "--quiet"])
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and cmd[-4:] == ["-m", "tinylm", "train", "--quiet"]


def test_nproc_refuses_an_existing_run_before_starting_torchrun(two_rank_run, cli):
    text, out = two_rank_run
    result = cli("train", "--nproc", "2", *options(text), "--out", str(out))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"tinylm: error: {out} already holds a run; continue it with --resume or choose another --out"]
