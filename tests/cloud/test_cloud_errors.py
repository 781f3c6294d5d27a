"""Every user-facing cloud error through the CLI: one line, exit code 2, no traceback, no key shown.

These call ``tinylm.cli.main`` in-process (``project.main``) to keep the suite fast; the remote-failure and
dropped-connection errors run the CLI as a subprocess in ``test_cloud_e2e.py``. RunPod's API is the local
stand-in from ``fake_runpod.py``; ssh targets are the real local sshd.
"""

from __future__ import annotations

import json
import os
import signal
import time


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinylm: error: "), result.stderr
    return lines[0]


def test_no_api_key_says_how_to_get_one(project):
    line = one_error_line(project.main("up", env={"RUNPOD_API_KEY": None}))
    assert "RUNPOD_API_KEY is not set" in line and "export RUNPOD_API_KEY=" in line and "runpod.io" in line
    assert project.api.calls.total() == 0


def test_rejected_key(project):
    line = one_error_line(project.main("up", env={"RUNPOD_API_KEY": "rp_wrong_key_123"}))
    assert "rejected the API key (401" in line and "rp_wrong_key_123" not in line
    assert project.api.calls["unauthorized"] >= 1 and project.api.calls["podFindAndDeployOnDemand"] == 0


def test_unknown_gpu_lists_valid_ones(project):
    line = one_error_line(project.main("up", "--gpu", "NVIDIA RTX 9999"))
    assert "unknown GPU type 'NVIDIA RTX 9999'" in line and "NVIDIA GeForce RTX 4090" in line
    assert "NVIDIA H100 80GB HBM3" in line and project.api.calls["podFindAndDeployOnDemand"] == 0


def test_pod_never_reachable_is_terminated(project, closed_port):
    project.api.ssh_port = closed_port
    line = one_error_line(project.main("up", "--wait-timeout", "4"))
    assert "never became reachable over ssh within 4s" in line
    assert f"tried root@127.0.0.1:{project.api.ssh_port}" in line and "was terminated" in line
    assert project.api.calls["podTerminate"] == 1
    assert json.loads((project.work / ".tinylm" / "cloud.json").read_text())["target"] == {}


def test_host_unreachable(project, closed_port):
    port = closed_port
    line = one_error_line(project.main("up", "--host", f"root@127.0.0.1:{port}"))
    assert f"cannot reach root@127.0.0.1:{port}" in line and "Connection refused" in line


def test_host_auth_refused_names_the_fix(project):
    line = one_error_line(project.main("up", "--host", project.sshd.host))  # this project's key is not authorised
    assert "auth refused" in line and "ssh-copy-id -i" in line and "id_ed25519.pub" in line


def test_bad_config_fails_before_any_pod(project):
    line = one_error_line(project.main("train", "--set", "n_embed=30", "--set", "n_heads=4"))
    assert "divisible" in line and project.api.calls.total() == 0
    line = one_error_line(project.main("train", "--name", "a;b", "--host", project.sshd.host))
    assert "run name" in line
    line = one_error_line(project.main("train", "--set", "init_from=runs/base"))  # a local path the pod lacks
    assert "init_from is not sent to the cloud machine" in line and project.api.calls.total() == 0


def test_max_minutes_watchdog_stops_the_pod(project):
    """The watchdog runs detached on 'the pod' and calls runpodctl (a recording stand-in there) on time."""
    up = project.main("up", "--max-minutes", "0.05", "--remote-dir", str(project.remote))  # 3 seconds
    assert up.returncode == 0, up.stderr
    pid = json.loads((project.work / ".tinylm" / "cloud.json").read_text())["target"]["watchdog_pid"]
    try:
        for _ in range(100):
            calls = project.sshd.runpodctl_calls
            if calls.exists() and "stop pod fakepod1" in calls.read_text():
                break
            time.sleep(0.2)
        assert "stop pod fakepod1" in project.sshd.runpodctl_calls.read_text()
    finally:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    assert "stops itself at" in up.stdout
    line = one_error_line(project.main("up", "--host", project.sshd.host, "--max-minutes", "5"))
    assert "--max-minutes stops RunPod pods only" in line


def test_export_sky_writes_a_task(project, small_text, tmp_path):
    out = tmp_path / "task.yaml"
    result = project.main("export-sky", "--preset", "attention-1", "--data", str(small_text), "--name", "a1",
                         "--accelerators", "A100:1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert 'accelerators: "A100:1"' in text and "--config /tmp/tinylm-files/a1.json" in text
    config = json.loads((tmp_path / "a1.config.json").read_text())
    assert config["train"]["data"] == "/tmp/tinylm-files/data/small.txt" and config["model"]["n_layer"] == 1
    mounts = dict(json.loads(f"[{line.strip().replace(': ', ', ', 1)}]") for line in text.splitlines()
                  if line.startswith('  "'))  # scalars are JSON, which YAML reads as double-quoted strings
    assert mounts["/tmp/tinylm-files/data/small.txt"] == str(small_text.resolve())
    assert mounts["/tmp/tinylm-files/a1.json"] == str((tmp_path / "a1.config.json").resolve())
