"""Fixtures for the cloud tests: a real OpenSSH sshd on 127.0.0.1 and a local stand-in for RunPod's API.

``sshd`` plays the pod (or any SSH machine): a real ``/usr/sbin/sshd`` with throwaway host keys, an
authorized_keys file in a temp dir, and a fake ``runpodctl`` on its PATH that records its arguments.
``runpod_api`` is a small HTTP server speaking the GraphQL the ``runpod`` SDK sends; the CLI reaches it
through ``RUNPOD_API_BASE_URL``. Without ``/usr/sbin/sshd`` these tests skip, except under ``CI=true``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .fake_runpod import FakeRunPod

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Sshd:
    port: int
    user: str
    authorized_keys: Path
    runpodctl_calls: Path  # what the fake runpodctl on the server's PATH was asked to do
    log: Path

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def authorize(self, public_key_file: Path) -> None:
        with self.authorized_keys.open("a") as f:
            f.write(public_key_file.read_text().strip() + "\n")


def _write_config(root: Path, fakebin: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_ed25519")], check=True)
    config = root / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", f"HostKey {root / 'host_ed25519'}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "StrictModes no", "UsePAM no", "MaxStartups 100", "MaxSessions 100", "LogLevel ERROR",
        f"SetEnv PATH={fakebin}:/usr/local/bin:/usr/bin:/bin",
    ]) + "\n")
    return config


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("sshd did not start listening within 15s")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real sshd at a free port on 127.0.0.1, stopped by its PID at the end of the session."""
    if not SSHD.is_file() or not shutil.which("ssh") or not shutil.which("rsync"):
        message = "OpenSSH server/client and rsync are needed (apt-get install openssh-server openssh-client rsync)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must run the cloud tests")
        pytest.skip(message)
    root = tmp_path_factory.mktemp("sshd")
    fakebin = root / "bin"
    fakebin.mkdir()
    calls = root / "runpodctl.calls"
    (fakebin / "runpodctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fakebin / "runpodctl").chmod(0o755)
    (root / "authorized_keys").touch()
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    config, port, log = _write_config(root, fakebin), free_port(), root / "sshd.log"
    proc = subprocess.Popen([str(SSHD), "-D", "-f", str(config), "-p", str(port), "-E", str(log)])
    try:
        _wait_for_port(port, proc, log)
        yield Sshd(port, getpass.getuser(), root / "authorized_keys", calls, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    return free_port()


@pytest.fixture
def runpod_api(sshd):
    """The RunPod stand-in; pods it creates answer ssh at the local sshd."""
    server = FakeRunPod(ssh_port=sshd.port, authorized_keys=sshd.authorized_keys)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path, runpod_api, sshd, monkeypatch, capfd):
    """A working directory, a remote dir on 'the pod', and the env the real CLI runs with."""
    work, remote = tmp_path / "work", tmp_path / "remote"
    work.mkdir()
    env = {"RUNPOD_API_BASE_URL": runpod_api.url, "RUNPOD_API_KEY": runpod_api.api_key,
           "TINYLM_CLOUD_REMOTE_PYTHON": sys.executable}  # 'the pod' already has torch: skip pip install
    yield Project(work, remote, env, runpod_api, sshd, monkeypatch, capfd)
    stop_remote_runs(remote)


def stop_remote_runs(remote: Path) -> None:
    """End runs a test left going on 'the pod' (this machine), by the process group each one leads."""
    for pid_file in remote.glob(".tinylm/jobs/*/pid"):
        if not (pid_file.parent / "exit_code").exists() and pid_file.read_text().strip():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass


@dataclass
class Project:
    work: Path
    remote: Path
    env: dict
    api: FakeRunPod
    sshd: Sshd
    monkeypatch: pytest.MonkeyPatch
    capfd: pytest.CaptureFixture

    def main(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """``tinylm cloud ARGS`` in-process through ``tinylm.cli.main`` (what the ``tinylm`` script runs),
        output captured at the file-descriptor level; faster than a subprocess, same code path."""
        from tinylm.cli import main

        with self.monkeypatch.context() as patch:
            patch.chdir(self.work)
            for key, value in {**self.env, **(env or {})}.items():
                patch.delenv(key, raising=False) if value is None else patch.setenv(key, value)
            self.capfd.readouterr()
            code = main(["cloud", *args])
            out, err = self.capfd.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    def cli(self, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **self.env, **(env or {})}
        full_env = {k: v for k, v in full_env.items() if v is not None}
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "tinylm", "cloud", *args], cwd=self.work, env=full_env,
                                capture_output=True, text=True, timeout=timeout)
        print(f"cloud {args[0]}: {time.monotonic() - start:.1f}s")
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tinylm", "cloud", *args], cwd=self.work,
                                env={**os.environ, **self.env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
