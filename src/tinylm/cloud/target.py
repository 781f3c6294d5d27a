"""A machine to train on: a RunPod pod or any SSH host, with ``sync``, ``run``, ``fetch`` and ``terminate``.

    target = Target(SSHTarget.parse("root@203.0.113.7:22022", ProjectKeys.ensure(Path(".tinylm"))))
    target.sync()                               # rsync this checkout's tracked files to ~/tinylm there
    target.run("nvidia-smi")                    # streamed; returns the remote exit code
    target.fetch("runs/a1", Path("runs/a1"))    # rsync a remote dir back
    target.terminate()                          # pods: terminate; plain hosts: nothing to do

Remote paths are relative to ``remote_dir`` (itself relative to the login's home unless absolute).
``sync`` sends only what git tracks (``git ls-files``), never an untracked ``.env``, ``id_rsa`` or
``secrets.json``; outside a git checkout only ``SYNC_ALLOW`` (pyproject.toml, README.md, src/...).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tinylm
from tinylm.cloud.runpod_api import one_line
from tinylm.cloud.runpod_provider import CloudError, RunPodProvider
from tinylm.cloud.ssh import ProjectKeys, SSHTarget, clean_env, describe_ssh_failure, probe

DEFAULT_REMOTE_DIR = "tinylm"
# Outside a git checkout, the files a remote `pip install -e .` and `python -m tinylm` need, and no others.
SYNC_ALLOW = ("pyproject.toml", "README.md", "LICENSE", "src")
SYNC_SKIP_PARTS = ("__pycache__", ".egg-info")
NEEDS_RSYNC = ("command -v rsync >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq rsync) "
               ">/dev/null 2>&1; } || "
               "{ echo 'rsync is missing on the remote machine: install it there' >&2; exit 98; }")
POLL_SECONDS = 2.0


def project_root() -> Path:
    """The tinylm source checkout this package runs from: what gets synced and ``pip install -e``'d remotely."""
    root = Path(tinylm.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise CloudError("tinylm cloud syncs a source checkout of tinylm, but this install has none; "
                         "clone the repository and `pip install -e '.[cloud]'`")
    return root


@dataclass
class Target:
    ssh: SSHTarget
    remote_dir: str = DEFAULT_REMOTE_DIR
    pod_id: str | None = None  # set for RunPod pods
    provider: RunPodProvider | None = None

    def shell(self, command: str) -> str:
        """``command`` run inside ``remote_dir`` (created if needed).

        A separate line, not ``&&``: a trailing ``&`` in ``command`` must background only that command,
        or the whole list would hold the ssh channel open until it ends."""
        rd = shlex.quote(self.remote_dir)
        return f"mkdir -p -- {rd} && cd -- {rd} || exit 97\n{command}"

    def run(self, command: str, capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run shell text in ``remote_dir``; output streams to ours unless ``capture``."""
        argv = self.ssh.ssh_argv(self.shell(command))
        try:
            return subprocess.run(argv, env=clean_env(), capture_output=capture, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CloudError(f"ssh to {self.ssh.address} timed out after {timeout:.0f}s running a command") from None

    def check(self, command: str, doing: str, timeout: float | None = 120) -> str:
        """Run, capture and return stdout; a failure becomes one CloudError line."""
        result = self.run(command, capture=True, timeout=timeout)
        if result.returncode == 255:
            raise CloudError(describe_ssh_failure(self.ssh, result.stderr))
        if result.returncode != 0:
            detail = " ".join((result.stderr or result.stdout).split())[-300:]
            raise CloudError(f"{doing} failed on {self.ssh.address} (exit code {result.returncode}): {detail}")
        return result.stdout

    def _rsync(self, argv: list[str], doing: str) -> None:
        result = subprocess.run(argv, env=clean_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            if "Permission denied" in result.stderr or "Connection" in result.stderr or result.returncode == 255:
                raise CloudError(describe_ssh_failure(self.ssh, result.stderr))
            detail = " ".join(result.stderr.split())[-300:]
            raise CloudError(f"rsync {doing} {self.ssh.address} failed (exit code {result.returncode}): {detail}")

    def push(self, sources: list[str], dest: str) -> None:
        """Copy local files into ``remote_dir/dest`` (a directory ending in /)."""
        self.check(f"mkdir -p -- {shlex.quote(dest)} && {NEEDS_RSYNC}", "preparing the remote directory")
        self._rsync(self.ssh.rsync_argv(sources, f"{self.remote_dir}/{dest}"), "to")

    def sync(self, project: Path | None = None, log=print) -> None:
        """Copy the project's tracked files (see ``files_to_sync``) into ``remote_dir``, saying how much first."""
        project = project or project_root()
        files = files_to_sync(project)
        size = sum((project / f).stat().st_size for f in files)
        log(f"sending {len(files)} files ({size / 1e6:.1f} MB) from {project} to {self.ssh.address}:{self.remote_dir}")
        self.check(NEEDS_RSYNC, "checking for rsync")
        with tempfile.NamedTemporaryFile("w", suffix=".files", encoding="utf-8", errors="surrogateescape") as listing:
            listing.write("".join(f + "\0" for f in files))
            listing.flush()
            self._rsync(self.ssh.rsync_argv([f"{project}/"], f"{self.remote_dir}/", files_from=listing.name), "to")

    def fetch(self, remote_path: str, local_dir: Path) -> None:
        """Copy the remote directory ``remote_dir/remote_path`` into ``local_dir``."""
        local_dir = local_dir.absolute()  # absolute: never read as an rsync option, whatever its name
        try:
            local_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CloudError(f"cannot create the local run directory {local_dir} ({exc.strerror or exc}); "
                             "choose another --out") from None
        self._rsync(self.ssh.rsync_argv([f"{self.remote_dir}/{remote_path}/"], f"{local_dir}/", pull=True), "from")

    def terminate(self) -> bool:
        """Terminate the pod (idempotent). Plain SSH hosts are the user's own: nothing is terminated."""
        if self.pod_id is None:
            return False
        self.provider = self.provider or RunPodProvider.from_env()
        return self.provider.terminate(self.pod_id)


def files_to_sync(project: Path) -> list[str]:
    """Paths (relative to ``project``) to send: ``git ls-files`` in a checkout, else ``SYNC_ALLOW``."""
    try:
        listed = subprocess.run(["git", "-C", str(project), "ls-files", "-z", "--cached"], capture_output=True,
                                check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:  # no git installed: the allow-list
        listed = subprocess.CompletedProcess([], 127, b"", b"")
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
        if not names:
            raise CloudError(f"git tracks no files in {project}, so there is nothing to send; `git add` the "
                             "project's files (untracked ones are never sent: they may be secrets)")
    else:
        names = [str(p.relative_to(project)) for entry in SYNC_ALLOW for p in _walk(project / entry)]
    return sorted(n for n in names if (project / n).is_file() and not (project / n).is_symlink()
                  and not any(part in n for part in SYNC_SKIP_PARTS))


def _walk(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [Path(root) / f for root, _, files in os.walk(path) for f in files] if path.is_dir() else []


def wait_for_ssh(provider: RunPodProvider, pod_id: str, keys: ProjectKeys, timeout: float) -> SSHTarget:
    """Poll the pod until its public 22/tcp port answers ssh with our key; CloudError after ``timeout``."""
    deadline = time.monotonic() + timeout
    tried: list[str] = []
    last = "RunPod never published a public port for 22/tcp"
    while True:
        endpoint = provider.ssh_endpoint(pod_id)
        if endpoint is not None:
            ssh = SSHTarget("root", endpoint[0], endpoint[1], keys, only_project_key=True,
                            connect_timeout=max(1, min(10, int(deadline - time.monotonic()))))
            if ssh.address not in tried:
                keys.forget_host(ssh.host, ssh.port)  # a recycled address must not trip the old pin
                tried.append(ssh.address)
            problem = probe(ssh, timeout=max(2.0, min(30.0, deadline - time.monotonic())))
            if problem is None:
                return ssh
            last = problem
        if time.monotonic() + POLL_SECONDS > deadline:
            break
        time.sleep(POLL_SECONDS)
    where = ", ".join(tried) or "no address"
    raise CloudError(f"pod {pod_id} never became reachable over ssh within {timeout:.0f}s "
                     f"(tried {where}; last: {last})")


def install_watchdog(target: Target, minutes: float) -> int:
    """On the pod: after ``minutes``, ``runpodctl stop pod ID``, detached so it outlives this laptop.

    Returns the watchdog's pid there."""
    pod = shlex.quote(target.pod_id or "")
    seconds = max(1, round(minutes * 60))
    # RunPod images export the pod's own API key for runpodctl in /etc/rp_environment
    script = (f"[ -f /etc/rp_environment ] && . /etc/rp_environment; sleep {seconds}; "
              f"runpodctl stop pod {pod}")
    out = target.check(f"nohup setsid sh -c {shlex.quote(script)} >/dev/null 2>&1 </dev/null & echo $!",
                       "installing the --max-minutes watchdog")
    pid = out.split()[-1] if out.split() else ""
    if not re.fullmatch(r"[0-9]{1,10}", pid):  # ASCII digits only: str.isdigit() also takes '²'
        raise CloudError(f"installing the --max-minutes watchdog on {target.ssh.address} gave no process id "
                         f"(output: {one_line(out, 80)!r})")
    return int(pid)  # its pid on the pod (and process group, thanks to setsid)
