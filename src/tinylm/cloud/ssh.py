"""Real ``ssh`` and ``rsync`` command lines for a pod or any SSH machine.

    target = SSHTarget.parse("root@203.0.113.7:22022", keys=ProjectKeys.ensure(Path(".tinylm")))
    subprocess.run(target.ssh_argv("nvidia-smi"))  # ssh -o IdentityFile="KEY" ... -T -- root@203.0.113.7 nvidia-smi
    subprocess.run(target.rsync_argv(["src/"], "tinylm/src/"))  # push, over the same ssh options

The project's own ed25519 key (mode 0600) lives in ``.tinylm/id_ed25519``; host keys are pinned in
``.tinylm/known_hosts`` (``StrictHostKeyChecking=accept-new``: the first key is trusted, a changed one refused).
Remote shell text is always built with ``shlex.quote``; ``RUNPOD_API_KEY`` never reaches ssh or rsync.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tinylm.atomic import atomic_write_text
from tinylm.errors import TinyLMError

PARTIAL_DIR = ".rsync-partial"
SECRET_ENV = ("RUNPOD_API_KEY",)
# Names and addresses only: ssh before 9.6 hands %h/%r to a user's ProxyCommand or Match exec as shell text.
_SAFE = {"user": re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*"), "host": re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]*")}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST_RE = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:@\s\[\]]+)(?::(?P<port>\d+))?$")


def check_address(user: object, host: object, port: object) -> None:
    """Refuse what ssh would read as an option (``-oProxyCommand=...``), split, or pass on as shell text."""
    for name, value in (("user", user), ("host", host)):
        if not isinstance(value, str) or not _SAFE[name].fullmatch(value):
            raise TinyLMError(f"ssh {name} {value!r} is not allowed: it must be letters, digits, '.', '_' or '-' "
                              "(and ':' in an IPv6 host), not starting with '-' (e.g. root@203.0.113.7:22022)")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise TinyLMError(f"ssh port must be 1-65535, got {port!r}")


def clean_env() -> dict[str, str]:
    """This process's environment without secrets: what ssh and rsync (and so the remote side) may see."""
    return {k: v for k, v in os.environ.items() if k not in SECRET_ENV}


@dataclass(frozen=True)
class ProjectKeys:
    """The per-project client key and pinned host keys."""

    key: Path
    known_hosts: Path

    @classmethod
    def ensure(cls, state_dir: Path) -> ProjectKeys:
        """Create ``state_dir/id_ed25519`` (mode 0600) on first use; reuse it afterwards."""
        state_dir = state_dir.absolute()  # a relative name could start with '~', which ssh expands
        config_path(state_dir)  # a directory ssh cannot be told about: refused before any key is made
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            key = state_dir / "id_ed25519"
            if not key.is_file():
                _keygen(["-q", "-t", "ed25519", "-N", "", "-C", "tinylm-cloud", "-f", str(key)], key, "create")
            os.chmod(key, 0o600)
            public = Path(f"{key}.pub")
            if not public.is_file():  # deleted by hand: derive it again rather than make a new key
                atomic_write_text(public, _keygen(["-y", "-f", str(key)], key, "read"))
            known_hosts = state_dir / "known_hosts"
            known_hosts.touch(mode=0o600, exist_ok=True)
        except OSError as exc:  # e.g. .tinylm is a file, or not ours to write
            raise TinyLMError(f"cannot set up the project's ssh key in {state_dir} ({exc.strerror or exc}); "
                              f"make {state_dir} a writable directory (move away what is there)") from None
        return cls(key, known_hosts)

    def public_key(self) -> str:
        return Path(str(self.key) + ".pub").read_text(encoding="utf-8").strip()

    def forget_host(self, host: str, port: int) -> None:
        """Drop a pinned key for host:port (a new pod may reuse an old pod's address with a new key)."""
        name = host if port == 22 else f"[{host}]:{port}"
        subprocess.run(["ssh-keygen", "-R", name, "-f", str(self.known_hosts)], capture_output=True)
        Path(str(self.known_hosts) + ".old").unlink(missing_ok=True)


def _keygen(args: list[str], key: Path, doing: str) -> str:
    result = subprocess.run(["ssh-keygen", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())[-200:] or "no output"
        raise TinyLMError(f"ssh-keygen could not {doing} {key} ({detail}); is openssh-client installed? If the key "
                          f"is damaged, delete {key} and {key}.pub (a new key is made; authorise it again)")
    return result.stdout


def config_path(path: Path) -> str:
    """``path`` as a double-quoted ssh_config value (``-o IdentityFile="..."``), '%' doubled.

    ssh splits ``-o`` text on spaces unless quoted and expands %-tokens and ``${VAR}`` in these file
    names; ``${`` has no escape, and quotes and backslashes are read differently by older ssh, so a path
    holding '"', '\\', '${' or a control character is refused."""
    text = str(path)
    if '"' in text or "\\" in text or "${" in text or _CONTROL.search(text):
        raise TinyLMError(f"ssh cannot be given the path {text!r} (it holds '\"', '\\', '${{' or a control "
                          "character); run tinylm cloud from a directory whose path has none of them")
    return '"' + text.replace("%", "%%") + '"'


@dataclass(frozen=True)
class SSHTarget:
    """Where commands run: ``user@host:port``, reached with the project's keys."""

    user: str
    host: str
    port: int
    keys: ProjectKeys
    only_project_key: bool = True  # pods: our key only; --host machines may also use the user's own keys
    connect_timeout: int = 10

    def __post_init__(self) -> None:
        check_address(self.user, self.host, self.port)

    @classmethod
    def parse(cls, spec: str, keys: ProjectKeys, only_project_key: bool = False) -> SSHTarget:
        match = _HOST_RE.match(spec.strip())
        if not match:
            raise TinyLMError(f"--host must look like user@ip[:port] (e.g. root@203.0.113.7:22022), got {spec!r}")
        return cls(match["user"] or "root", match["host"].strip("[]"), int(match["port"] or 22), keys,
                   only_project_key)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def options(self) -> list[str]:
        # -o, not -i: ssh drops an -i file whose name, read literally, does not exist (a '%' in it)
        opts = ["-o", f"IdentityFile={config_path(self.keys.key)}",
                "-o", f"UserKnownHostsFile={config_path(self.keys.known_hosts)}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.only_project_key:
            opts += ["-o", "IdentitiesOnly=yes"]
        return opts

    def ssh_argv(self, remote_command: str | None = None, tty: bool = False) -> list[str]:
        """``ssh`` argv; ``remote_command`` is shell text the caller built with ``shlex.quote``."""
        # "--": nothing after it is an option, whatever the destination holds
        argv = ["ssh", *self.options(), "-p", str(self.port), "-t" if tty else "-T", "--", f"{self.user}@{self.host}"]
        return argv + ([remote_command] if remote_command is not None else [])

    def remote_spec(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{path}"

    def rsync_argv(self, sources: list[str], dest: str, excludes: tuple[str, ...] = (), pull: bool = False,
                   filters: tuple[str, ...] = (), files_from: str | None = None) -> list[str]:
        """``rsync -a`` over our ssh options. Push ``sources`` to remote ``dest``, or pull remote ``sources``.

        ``files_from``: a local file of NUL-separated paths (relative to the one source dir) to send, no others."""
        rsh = shlex.join(["ssh", *self.options(), "-p", str(self.port)])
        # New files wait in .rsync-partial/ and are renamed into place together at the end: a fetch cut short
        # (Ctrl-C) leaves the intact older checkpoint, never half of the new one under its name.
        argv = ["rsync", "-a", f"--partial-dir={PARTIAL_DIR}", "--delay-updates", "-e", rsh]
        argv += ["--from0", f"--files-from={files_from}"] if files_from else []  # NUL-separated: any file name
        argv += [f"--filter={rule}" for rule in filters] + [f"--exclude={pattern}" for pattern in excludes]
        argv.append("--")  # operands from here on, even one starting with '-'
        if pull:
            return argv + [self.remote_spec(src) for src in sources] + [dest]
        return argv + sources + [self.remote_spec(dest)]


def describe_ssh_failure(target: SSHTarget, stderr: str) -> str:
    """One line saying why ssh could not get in (unreachable, auth refused, host key changed)."""
    text = " ".join(stderr.split()) or "no answer"
    if "Permission denied" in text:
        return (f"ssh auth refused by {target.address} ({text}); authorise this project's key there: "
                f"ssh-copy-id -i {target.keys.key}.pub -p {target.port} {target.user}@{target.host}")
    if "IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        return (f"the host key of {target.address} changed since it was pinned in {target.keys.known_hosts}; "
                "if the machine was rebuilt, remove its line there and retry")
    return f"cannot reach {target.address} over ssh ({text}); check the address, the port and that sshd runs there"


def probe(target: SSHTarget, timeout: float = 30) -> str | None:
    """None when ``ssh target true`` works, else the reason it does not."""
    try:
        result = subprocess.run(target.ssh_argv("true"), capture_output=True, text=True, timeout=timeout,
                                env=clean_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"ssh to {target.address} did not answer within {timeout:.0f}s"
    return None if result.returncode == 0 else describe_ssh_failure(target, result.stderr)
