"""End to end through the real CLI: a real sshd plays the pod, a local server stands in for RunPod's API.

    up -> status -> ssh -> train (tiny CPU run) -> the checkpoint comes back and loads -> down (once)
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tinylm.training.rundir import load_run

TINY_RUN = ["--set", "n_layer=2", "--set", "n_embed=32", "--set", "n_heads=2", "--set", "block_size=16",
            "--set", "batch_size=8", "--set", "eval_iters=2", "--set", "threads=1", "--device", "cpu"]


def everything_written(project) -> str:
    """Every file the CLI wrote locally and on 'the pod', as text (for the no-key-anywhere check)."""
    texts = []
    for root in (project.work, project.remote):
        for path in root.rglob("*"):
            if path.is_file():
                texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


@pytest.mark.slow
def test_up_train_fetch_down(project, small_text):
    # a config value that would run a command if it ever became shell text: here it is a file name
    weird = small_text.parent / 'a"; touch pwned; echo "b\'; touch pwned2; \'c.txt'
    weird.write_text(small_text.read_text())
    up = project.cli("up", "--remote-dir", str(project.remote), "--max-minutes", "600")
    assert up.returncode == 0, up.stderr
    state = json.loads((project.work / ".tinylm" / "cloud.json").read_text())
    assert state["target"]["pod_id"] == "fakepod1" and state["target"]["port"] == project.sshd.port
    assert (project.work / ".tinylm" / "id_ed25519").stat().st_mode & 0o777 == 0o600
    watchdog = state["target"]["watchdog_pid"]  # `sleep 36000; runpodctl stop pod ...` on 'the pod'
    try:
        os.kill(watchdog, 0)
        check_train_fetch_down(project, weird, [up])
    finally:
        os.killpg(watchdog, signal.SIGTERM)  # a real pod takes its watchdog along when terminated


def check_train_fetch_down(project, weird: Path, results: list) -> None:
    status = project.main("status")  # in-process: the subprocess path is shown by up/train/down
    assert "fakepod1" in status.stdout and "ssh: ok" in status.stdout, status.stdout + status.stderr
    assert "runpod: RUNNING, $0.69/h" in status.stdout
    shell = project.main("ssh", "--", "echo", "hello from the pod")
    assert shell.returncode == 0 and "hello from the pod" in shell.stdout

    train = project.cli("train", *TINY_RUN, "--set", "max_iters=10", "--set", "eval_interval=5",
                        "--data", str(weird), "--name", "e2e")
    assert train.returncode == 0, train.stdout + train.stderr
    assert "step 10" in train.stdout or "step 9" in train.stdout  # the remote log, streamed
    model, tokenizer, cfg, ckpt = load_run(project.work / "runs" / "e2e")
    assert cfg.model.n_layer == 2 and ckpt["step"] >= 9
    assert not list(project.work.rglob("pwned*")) and not list(project.remote.rglob("pwned*"))

    down = project.cli("down")
    assert down.returncode == 0 and "terminated pod fakepod1" in down.stdout
    again = project.main("down")
    assert again.returncode == 0 and project.api.calls["podTerminate"] == 1
    outputs = "".join(r.stdout + r.stderr for r in (*results, status, shell, train, down, again))
    assert project.api.api_key not in outputs + everything_written(project)


@pytest.mark.slow
def test_train_down_after_remote_failure_reports_exit_code(project, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short to hold one block\n")
    result = project.cli("train", *TINY_RUN, "--data", str(short), "--down", "--remote-dir", str(project.remote))
    assert result.returncode == 2
    assert "failed with exit code 2" in result.stderr and "too short" in result.stderr, result.stderr
    assert project.api.calls["podFindAndDeployOnDemand"] == 1 and project.api.calls["podTerminate"] == 1


def _child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _wait_for_line(proc, marker: str, timeout: float = 90) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never appeared: {''.join(lines)}")


@pytest.mark.slow
def test_ctrl_c_with_down_fetches_and_terminates(project, small_text):
    proc = project.popen("train", *TINY_RUN, "--set", "max_iters=100000", "--set", "eval_interval=5",
                         "--data", str(small_text), "--down", "--name", "ctrlc", "--remote-dir", str(project.remote))
    _wait_for_line(proc, "step 5")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert project.api.calls["podTerminate"] == 1
    assert (project.work / "runs" / "ctrlc" / "ckpt.pt").is_file()  # what was saved came back first
    # terminating a real pod ends the run with it; here the `project` fixture ends it on this machine


@pytest.mark.slow
def test_dropped_connection_then_attach(project, small_text):
    authorize_project_key(project)
    host = ["--host", project.sshd.host, "--remote-dir", str(project.remote)]
    proc = project.popen("train", *TINY_RUN, "--set", "max_iters=30", "--set", "eval_interval=10",
                         "--data", str(small_text), "--name", "drop", *host)
    _wait_for_line(proc, "step 0")
    assert not (project.remote / ".tinylm" / "jobs" / "drop" / "exit_code").exists()  # mid-run
    for pid in _child_pids(proc.pid):  # the local ssh client streaming the log: cut it
        if "tail" in Path(f"/proc/{pid}/cmdline").read_text():
            os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "dropped mid-run" in err and "--attach" in err, err

    attach = project.cli("train", "--attach", *host)
    assert attach.returncode == 0, attach.stdout + attach.stderr
    assert "step 0" in attach.stdout and "step 29" in attach.stdout  # the whole log, streamed again
    assert load_run(project.work / "runs" / "drop")[3]["step"] >= 29
    logs = project.cli("logs", *host[:2])
    assert logs.returncode == 0 and "step 29" in logs.stdout and "ended with exit code 0" in logs.stdout


def authorize_project_key(project) -> None:
    from tinylm.cloud.ssh import ProjectKeys

    keys = ProjectKeys.ensure(project.work / ".tinylm")
    project.sshd.authorize(Path(str(keys.key) + ".pub"))
