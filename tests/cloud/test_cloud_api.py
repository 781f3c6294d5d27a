"""The notebook's helpers and the typed API, against the real local sshd (here, 'any SSH machine')."""

from __future__ import annotations

import shlex
from pathlib import Path

from tinylm.cli import main
from tinylm.cloud import current_target, run_on_pod, sync_to_pod
from tinylm.cloud.ssh import ProjectKeys, SSHTarget


def test_sync_and_run_on_pod(project, monkeypatch, capfd):
    monkeypatch.chdir(project.work)
    keys = ProjectKeys.ensure(project.work / ".tinylm")
    project.sshd.authorize(Path(f"{keys.key}.pub"))
    assert main(["cloud", "up", "--host", project.sshd.host, "--remote-dir", str(project.remote)]) == 0
    assert sync_to_pod() is True
    assert (project.remote / "src" / "tinylm" / "cloud" / "ssh.py").is_file()
    assert not (project.remote / ".venv").exists() and not (project.remote / ".git").exists()
    capfd.readouterr()
    assert run_on_pod("test -f pyproject.toml && echo synced-and-here") is True
    assert "synced-and-here" in capfd.readouterr().out  # streamed straight through
    assert run_on_pod("exit 3") is False

    target = current_target()
    target.run("mkdir -p runs/x && echo data > runs/x/f.txt")
    target.fetch("runs/x", project.work / "back")
    assert (project.work / "back" / "f.txt").read_text() == "data\n"
    assert target.terminate() is False  # a plain ssh host is the user's own: nothing to terminate


def test_commands_are_quoted_and_keys_private(tmp_path):
    keys = ProjectKeys.ensure(tmp_path / ".tinylm")
    assert keys.key.stat().st_mode & 0o777 == 0o600
    assert keys.public_key().startswith("ssh-ed25519 ")
    target = SSHTarget.parse("ubuntu@[2001:db8::1]:2222", keys)
    argv = target.ssh_argv("echo hi")
    assert argv[-2:] == ["ubuntu@2001:db8::1", "echo hi"] and "StrictHostKeyChecking=accept-new" in argv
    assert f'UserKnownHostsFile="{keys.known_hosts}"' in argv and "BatchMode=yes" in argv
    pull = target.rsync_argv(["runs/a b/"], "out/", pull=True)
    assert pull[-3:] == ["--", "ubuntu@[2001:db8::1]:runs/a b/", "out/"]
    assert shlex.split(pull[pull.index("-e") + 1])[0] == "ssh"
    assert SSHTarget.parse("10.0.0.1", keys).address == "root@10.0.0.1:22"


def test_host_targets_never_forget_or_terminate_a_recorded_pod(project):
    from tinylm.cloud.session import CloudState, take_down, target_from

    keys = ProjectKeys.ensure(project.work / ".tinylm")
    project.sshd.authorize(Path(f"{keys.key}.pub"))
    assert project.main("up", "--remote-dir", str(project.remote)).returncode == 0
    assert project.main("up", "--host", project.sshd.host).returncode == 0  # e.g. a lab box, alongside
    state = CloudState.load(project.work / ".tinylm")
    assert state.target["pod_id"] == "fakepod1"
    take_down(state, target_from(state, project.sshd.host))  # what `train --host ... --down` does at the end
    assert project.api.calls["podTerminate"] == 0 and CloudState.load(state.state_dir).target["pod_id"]
    assert "terminated pod fakepod1" in project.main("down").stdout
    assert project.api.calls["podTerminate"] == 1
