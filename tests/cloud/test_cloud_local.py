"""The local side stays whole: state files, the project's keys and the run directory, against the real local sshd.

A hostile ``.tinylm`` (wrong shapes, a directory for a file, a missing ``.pub``) is one error line; a
fetch destination is never an rsync option; a fetch cut short by Ctrl-C keeps the older checkpoint; a
project path with spaces, '%' or quotes still reaches ssh as one file name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinylm.cloud.job import RemoteJob
from tinylm.cloud.ssh import ProjectKeys, SSHTarget
from tinylm.cloud.target import Target, install_watchdog
from tinylm.errors import TinyLMError

from .test_cloud_errors import one_error_line


def ssh_target(project, state_dir: Path) -> Target:
    keys = ProjectKeys.ensure(state_dir)
    project.sshd.authorize(Path(f"{keys.key}.pub"))
    return Target(SSHTarget.parse(project.sshd.host, keys), str(project.remote))


def remote_run(project, name: str, files: dict[str, bytes]) -> None:
    """A finished run on 'the pod': its job dir (pid, exit code, log) and its run directory."""
    job = project.remote / ".tinylm" / "jobs" / name
    job.mkdir(parents=True)
    (job / "pid").write_text("999999\n")
    (job / "exit_code").write_text("0\n")
    (job / "train.log").write_text("step 1\n")
    for rel, data in files.items():
        (project.remote / "runs" / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (project.remote / "runs" / name / rel).write_bytes(data)


def test_a_fetch_destination_is_never_an_rsync_option(project, tmp_path):
    marker = tmp_path / "pwned"
    ssh_target(project, project.work / ".tinylm")
    remote_run(project, "j1", {"f.txt": b"data\n"})
    hostile = f"-esh -c 'touch {marker}' x"
    state = {"target": {"provider": "ssh", "user": project.sshd.user, "host": "127.0.0.1", "port": project.sshd.port,
                        "remote_dir": str(project.remote)},
             "job": {"name": "j1", "remote_dir": str(project.remote), "local_out": hostile}}
    (project.work / ".tinylm" / "cloud.json").write_text(json.dumps(state))
    result = project.main("train", "--attach")
    assert result.returncode == 0, result.stderr
    assert (project.work / hostile / "f.txt").read_text() == "data\n" and not marker.exists()


@pytest.mark.parametrize("local_out", ["/etc/cron.d", "../outside", "runs/../../outside", "", "runs/a\nb"])
def test_a_local_run_directory_outside_the_project_is_refused(project, local_out):
    (project.work / ".tinylm").mkdir()
    job = {"name": "j1", "local_out": local_out}
    (project.work / ".tinylm" / "cloud.json").write_text(json.dumps({"target": {}, "job": job}))
    assert "bad job local_out" in one_error_line(project.main("status"))
    if local_out:
        line = one_error_line(project.main("train", "--attach", "--name", "j1", "--out", local_out))
        assert "bad job local_out" in line
        (project.work / ".tinylm" / "cloud.json").unlink()
        line = one_error_line(project.main("train", "--host", project.sshd.host, "--out", local_out))
        assert "must be a relative path inside this project" in line


def test_an_interrupted_fetch_keeps_the_older_checkpoint(project, tmp_path):
    """Ctrl-C in the middle of a real rsync (slowed by --bwlimit so the signal lands mid-file)."""
    target = ssh_target(project, project.work / ".tinylm")
    remote_run(project, "j2", {"checkpoint.pt": os.urandom(6 << 20)})
    local = project.work / "runs" / "j2"
    local.mkdir(parents=True)
    old = b"OLD-INTACT" * 100_000
    (local / "checkpoint.pt").write_bytes(old)
    child = (
        "import subprocess, sys\nfrom pathlib import Path\nfrom tinylm.cloud import target as T\n"
        "from tinylm.cloud.ssh import ProjectKeys, SSHTarget\nreal = subprocess.run\n"
        "T.subprocess.run = lambda argv, *a, **k: real(argv[:1] + ['--bwlimit=1500'] + argv[1:], *a, **k)\n"
        f"ssh = SSHTarget.parse({project.sshd.host!r}, ProjectKeys.ensure(Path('.tinylm')))\n"
        f"T.Target(ssh, {target.remote_dir!r}).fetch('runs/j2', Path('runs/j2'))\n")
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=project.work, start_new_session=True,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not arrived(local, 1 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)  # until a good part of the new file has come in, under rsync's temporary name
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group, rsync and ssh too
    assert proc.wait(timeout=20) != 0
    assert (local / "checkpoint.pt").read_bytes() == old


def arrived(local: Path, size: int) -> bool:
    return any(p.is_file() and p.name != "checkpoint.pt" and p.stat().st_size > size for p in local.rglob("*"))


def test_a_project_path_with_spaces_percent_and_quotes_reaches_ssh_whole(project, tmp_path):
    base = tmp_path / "base"
    work = base / "my proj %h %d 'q' #1"
    target = ssh_target(project, work / ".tinylm")
    target.run("mkdir -p runs/x && echo data > runs/x/f.txt")
    target.fetch("runs/x", work / "runs" / "x")
    assert (work / "runs" / "x" / "f.txt").read_text() == "data\n"
    assert "ssh-ed25519" in (work / ".tinylm" / "known_hosts").read_text()  # pinned where we said
    assert [p.name for p in base.iterdir()] == [work.name]  # and nowhere else
    for name in ['dq"x', "${HOME}", "bs\\x", "new\nline"]:  # no way to quote these for every ssh: refused
        with pytest.raises(TinyLMError, match="ssh cannot be given the path"):
            ProjectKeys.ensure(base / name / ".tinylm")
    assert [p.name for p in base.iterdir()] == [work.name]


@pytest.mark.parametrize(("case", "fragment"), [
    ("job without name", "bad job name"), ("nested", "is not valid JSON"),
    ("cloud.json a directory", "cannot read the cloud state"), (".tinylm a file", ".tinylm must be a directory"),
])
def test_a_hostile_state_directory_is_one_line(project, case, fragment):
    state_dir = project.work / ".tinylm"
    if case == ".tinylm a file":
        state_dir.write_text("x")
    else:
        state_dir.mkdir()
        content = {"job without name": json.dumps({"target": {}, "job": {"local_out": "runs/x"}}),
                   "nested": "[" * 100000 + "]" * 100000}.get(case)
        (state_dir / "cloud.json").mkdir() if content is None else (state_dir / "cloud.json").write_text(content)
    for command in (["down"], ["logs"], ["ssh", "--", "true"], ["up", "--host", project.sshd.host]):
        assert fragment in one_error_line(project.main(*command)), command


def test_a_missing_public_key_is_derived_again(project, tmp_path):
    keys = ProjectKeys.ensure(tmp_path / ".tinylm")
    public = keys.public_key()
    Path(f"{keys.key}.pub").unlink()
    assert ProjectKeys.ensure(tmp_path / ".tinylm").public_key() == public
    Path(f"{keys.key}.pub").unlink()
    keys.key.write_text("not a key\n")
    with pytest.raises(TinyLMError, match="could not read .*delete"):
        ProjectKeys.ensure(tmp_path / ".tinylm")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(TinyLMError, match="cannot set up the project's ssh key"):
        ProjectKeys.ensure(tmp_path / "a-file")


def test_odd_remote_numbers_are_unknown_not_crashes(project, monkeypatch):
    target = ssh_target(project, project.work / ".tinylm")
    remote_run(project, "j3", {})
    (project.remote / ".tinylm" / "jobs" / "j3" / "exit_code").write_text("\u00b2\n")  # '²': isdigit() says yes
    with pytest.raises(TinyLMError, match="stopped without an exit code"):
        RemoteJob(target, "j3").exit_code()
    for output in ("", "\u00b2\n", "started\n"):
        monkeypatch.setattr(Target, "check", lambda self, command, doing, timeout=120, out=output: out)
        with pytest.raises(TinyLMError, match="gave no process id"):
            install_watchdog(target, 5)
