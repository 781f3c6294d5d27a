"""Issue 17's cloud findings, each against the real local sshd and the local RunPod stand-in.

Secrets next to the project never leave (only ``git ls-files``, or an allow-list outside git); a
user/host that ssh would read as an option never runs a command, from ``--host`` or from the state
file; a hostile directory name reaches RunPod as a name, not as extra arguments; ``--remote-python``
sticks; a machine without torch is an error that names the laptop's version, not a silent download.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tinylm.cloud.job import RemoteJob, local_torch_version, setup_script
from tinylm.cloud.runpod_provider import RunPodProvider
from tinylm.cloud.ssh import ProjectKeys, SSHTarget
from tinylm.cloud.target import Target
from tinylm.errors import TinyLMError

SECRETS = [".env", "id_rsa", "secrets.json", ".aws/credentials", "big.bin"]


def make_project(root: Path, git: bool) -> Path:
    for name, text in [("pyproject.toml", "[project]\nname = 'x'\n"), ("src/tinylm/a.py", "A = 1\n"),
                       ("notes/todo.txt", "tracked, outside the allow-list\n")]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        subprocess.run(["git", "-C", str(root), "add", "pyproject.toml", "src", "notes"], check=True)
    for name in SECRETS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("RUNPOD_API_KEY=rp_secret\n")
    return root


@pytest.mark.parametrize("git", [True, False], ids=["git-checkout", "no-git"])
def test_sync_sends_tracked_files_only_and_says_how_much(project, tmp_path, git):
    keys = ProjectKeys.ensure(project.work / ".tinylm")
    project.sshd.authorize(Path(f"{keys.key}.pub"))
    source = make_project(tmp_path / "proj", git)
    said = []
    Target(SSHTarget.parse(project.sshd.host, keys), str(project.remote)).sync(source, log=said.append)
    sent = sorted(str(p.relative_to(project.remote)) for p in project.remote.rglob("*") if p.is_file())
    expected = ["notes/todo.txt", "pyproject.toml", "src/tinylm/a.py"] if git else ["pyproject.toml", "src/tinylm/a.py"]
    assert sent == expected
    assert said == [f"sending {len(expected)} files (0.0 MB) from {source} to {project.sshd.host}:{project.remote}"]


def test_bad_data_fails_before_any_pod_or_upload(project):
    result = project.main("train", "--data", "missing.txt", "--set", "max_iters=1")
    assert result.returncode == 2 and "data file not found: missing.txt" in result.stderr
    assert project.api.calls["podFindAndDeployOnDemand"] == 0 and not project.remote.exists()


def test_ssh_user_or_host_that_is_an_option_is_refused(project, tmp_path):
    marker = tmp_path / "pwned"
    for host in [f"-oProxyCommand=touch${{IFS}}{marker}@127.0.0.1:{project.sshd.port}",
                 f"root@-oProxyCommand=touch${{IFS}}{marker}", "root@127.0.0.1\x07", "ro\x1bot@127.0.0.1"]:
        result = project.main("up", f"--host={host}")
        assert result.returncode == 2 and "is not allowed" in result.stderr, (host, result.stderr)
    assert not list(tmp_path.glob("pwned*"))
    argv = SSHTarget.parse("root@127.0.0.1", ProjectKeys.ensure(tmp_path / "k")).ssh_argv("true")
    assert argv[-3:] == ["--", "root@127.0.0.1", "true"]


def test_a_hostile_address_from_runpod_is_refused_and_the_pod_terminated(project, tmp_path):
    marker = tmp_path / "pwned"
    project.api.public_ip = f"-oProxyCommand=touch${{IFS}}{marker}"
    result = project.main("up", "--wait-timeout", "5")
    assert result.returncode == 2 and "is not allowed" in result.stderr and "was terminated" in result.stderr
    assert project.api.calls["podTerminate"] == 1 and not list(tmp_path.glob("pwned*"))


def test_state_file_is_checked_when_read(project, tmp_path):
    marker = tmp_path / "pwned"
    state = project.work / ".tinylm" / "cloud.json"
    state.parent.mkdir(parents=True)
    for target, fragment in [({"user": f"-oProxyCommand=touch${{IFS}}{marker}", "host": "127.0.0.1",
                               "port": project.sshd.port}, "bad address"),
                             ({"user": "root", "host": "127.0.0.1", "port": "22; rm -rf ~"}, "bad port"),
                             ({"pod_id": 'x") { id } podTerminate(input: {podId: "y', "host": ""}, "bad pod_id")]:
        state.write_text(json.dumps({"target": target, "job": {}}))
        result = project.main("ssh", "--", "true")
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
    state.write_text(json.dumps({"target": {}, "job": {"name": "../../etc"}}))
    assert "bad job name" in project.main("status").stderr
    assert not list(tmp_path.glob("pwned*"))


def test_hostile_directory_name_stays_a_name_at_runpod(project):
    hostile = 'q", gpuCount: 8, cloudType: SECURE, name: "z'
    project.monkeypatch.setenv("RUNPOD_API_BASE_URL", project.api.url)
    pod_id = RunPodProvider(project.api.api_key).create(f"tinylm-{hostile}", "NVIDIA GeForce RTX 4090", "img", 20,
                                                        "ssh-ed25519 AAAA")
    sent = project.api.pods[pod_id]["input"]  # decoded as a GraphQL server decodes it
    assert sent["name"] == f"tinylm-{hostile}" and sent["gpuCount"] == "1" and sent["cloudType"] == "ALL"
    # ssh cannot be told a key path holding '"' safely (its -o text is parsed): one line, before any pod
    project.work = project.work / hostile
    project.work.mkdir()
    result = project.main("up", "--remote-dir", str(project.remote))
    assert result.returncode == 2 and "ssh cannot be given the path" in result.stderr, result.stderr
    assert project.api.calls["podFindAndDeployOnDemand"] == 1


def test_remote_python_given_to_up_is_kept_by_the_next_host_call(project):
    keys = ProjectKeys.ensure(project.work / ".tinylm")
    project.sshd.authorize(Path(f"{keys.key}.pub"))
    assert project.main("up", "--host", project.sshd.host, "--remote-python", "/opt/py/bin/python").returncode == 0
    assert project.main("up", "--host", project.sshd.host).returncode == 0  # what `train --host` does first
    state = json.loads((project.work / ".tinylm" / "cloud.json").read_text())
    assert state["target"]["remote_python"] == "/opt/py/bin/python"


@pytest.mark.slow  # makes a real venv on 'the machine' (ensurepip: seconds)
def test_a_machine_without_torch_is_a_clear_error_not_a_download(project):
    keys = ProjectKeys.ensure(project.work / ".tinylm")
    project.sshd.authorize(Path(f"{keys.key}.pub"))
    project.remote.mkdir()
    (project.remote / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['torch']\n")
    ssh = SSHTarget.parse(project.sshd.host, keys)
    bare = Target(ssh, str(project.remote))
    if bare.run("python3 -c 'import torch'", capture=True).returncode == 0:
        pytest.skip("this machine's system python3 has torch")
    with pytest.raises(TinyLMError, match=f"has no torch.*torch=={local_torch_version()}.*--install-torch"):
        RemoteJob(bare, "t").setup()
    assert not (project.remote / ".venv" / ".tinylm-installed").exists()  # pip install -e . never ran
    assert f"pip install --quiet --disable-pip-version-check torch=={local_torch_version()}" in setup_script(True)
