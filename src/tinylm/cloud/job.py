"""A training run on a remote machine that outlives the ssh connection that started it.

    job = RemoteJob(target, "a1-20250101-120000", python=None)   # None: a venv in remote_dir/.venv
    job.setup()                                  # venv --system-site-packages + pip install -e . (once)
    job.start()                                  # nohup setsid python -m tinylm train --config FILE ...
    code = job.follow()                          # streams train.log live; the remote exit code
    target.fetch(job.run_dir, Path("runs/a1"))

Remote layout inside ``remote_dir``: ``.tinylm/jobs/NAME/{config.json, train.log, pid, exit_code}`` and
``runs/NAME`` (the run directory). The config travels as a file: no config value is ever shell text.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass

from tinylm.cloud.runpod_api import one_line
from tinylm.cloud.runpod_provider import CloudError
from tinylm.cloud.ssh import clean_env
from tinylm.cloud.target import Target

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
VENV_PYTHON = ".venv/bin/python"
# RunPod's PyTorch images already have torch: a venv that sees it, then tinylm's own dependencies.
# Where python3 has no venv module (no ensurepip), .venv/bin/python is a link to python3 itself.
# A machine without torch stops with NO_TORCH_EXIT unless asked to install one: pip would otherwise
# pull a multi-GB CUDA build as a side effect of `pip install -e .`.
NO_TORCH_EXIT = 95
SETUP_VENV = ("if [ ! -x .venv/bin/python ]; then python3 -m venv --system-site-packages .venv 2>/dev/null || "
              '{ rm -rf .venv && mkdir -p .venv/bin && ln -s "$(command -v python3)" .venv/bin/python; }; fi && '
              "if ! .venv/bin/python -c 'import torch' 2>/dev/null; then TORCH_STEP; fi && "
              "if ! cmp -s pyproject.toml .venv/.tinylm-installed; then "
              ".venv/bin/python -m pip install --quiet --disable-pip-version-check -e . && "
              "cp pyproject.toml .venv/.tinylm-installed; fi")
PIP_TORCH = ".venv/bin/python -m pip install --quiet --disable-pip-version-check {spec}"


def local_torch_version() -> str:
    """This laptop's torch release without its local build tag (2.13.0+cpu -> 2.13.0)."""
    import torch

    return torch.__version__.split("+")[0]


def setup_script(install_torch: bool) -> str:
    """SETUP_VENV, either refusing (exit NO_TORCH_EXIT) or installing this laptop's torch version where none is."""
    step = (PIP_TORCH.format(spec=shlex.quote(f"torch=={local_torch_version()}")) if install_torch
            else f"exit {NO_TORCH_EXIT}")
    return SETUP_VENV.replace("TORCH_STEP", step)


class ConnectionDropped(CloudError):
    """ssh died while streaming; the run goes on remotely."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # fullmatch: '$' alone lets a final newline by
        raise CloudError("run name must be letters, digits, '.', '_' or '-' (at most 100), "
                         f"got {one_line(repr(name), 120)}")
    return name


@dataclass
class RemoteJob:
    target: Target
    name: str
    python: str | None = None  # a remote interpreter that already has torch; None: set up .venv
    data_dir: str | None = None  # remote TINYLM_DATA_DIR (relative to remote_dir), if we pushed a corpus
    sample_chars: int = 0
    nproc: int = 1  # DDP ranks: `tinylm train --nproc N` runs torchrun on N GPUs
    install_torch: bool = False  # a machine without torch gets torch==(this laptop's version)

    @property
    def job_dir(self) -> str:
        return f".tinylm/jobs/{check_name(self.name)}"

    @property
    def run_dir(self) -> str:
        return f"runs/{check_name(self.name)}"

    def setup(self) -> None:
        """Install tinylm remotely unless ``python`` was given (e.g. a machine that has everything)."""
        if self.python is not None:
            return
        result = self.target.run(setup_script(self.install_torch))
        if result.returncode == NO_TORCH_EXIT:
            version = local_torch_version()
            raise CloudError(f"{self.target.ssh.address} has no torch, and pip would download a multi-GB build "
                             f"there; install it yourself (pip install torch=={version}, this laptop's version), "
                             "pass --remote-python PATH for an interpreter that has it, or rerun with "
                             f"--install-torch to install torch=={version}")
        if result.returncode != 0:
            raise CloudError(f"installing tinylm on {self.target.ssh.address} failed (exit code {result.returncode}); "
                             "see the output above, or pass --remote-python PATH for an interpreter that has torch")

    def train_command(self) -> str:
        """The shell text the detached runner executes; every piece is quoted."""
        q = shlex.quote
        env = 'PYTHONPATH="$PWD/src"'
        if self.data_dir:
            env += f' TINYLM_DATA_DIR="$PWD"/{q(self.data_dir)}'
        python = q(self.python or VENV_PYTHON)
        return (f"{env} {python} -u -m tinylm train --config {q(self.job_dir + '/config.json')} "
                f"--out {q(self.run_dir)} --quiet --sample-chars {int(self.sample_chars)}"
                + (f" --nproc {int(self.nproc)}" if self.nproc > 1 else ""))

    def start(self) -> None:
        """Launch the run under nohup/setsid; it writes its pid first and its exit code last."""
        q, jd = shlex.quote, shlex.quote(self.job_dir)
        runner = (f"echo $$ > {jd}/pid; {self.train_command()}; code=$?; "
                  f"echo $code > {jd}/exit_code.tmp && mv {jd}/exit_code.tmp {jd}/exit_code")
        command = (f"rm -f {jd}/exit_code {jd}/pid; nohup setsid sh -c {q(runner)} "
                   f"> {jd}/train.log 2>&1 < /dev/null &")
        self.target.check(command, "starting the run")

    def follow(self) -> int:
        """Stream ``train.log`` from the start until the run ends; return its exit code."""
        jd = shlex.quote(self.job_dir)
        stream = (f"cd {jd} 2>/dev/null || exit 96; "
                  "i=0; while [ ! -s pid ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
                  'tail -n +1 -s 0.5 --pid="$(cat pid)" -F train.log 2>/dev/null')
        argv = self.target.ssh.ssh_argv(self.target.shell(stream))
        result = subprocess.run(argv, env=clean_env(), stdin=subprocess.DEVNULL)
        if result.returncode == 96:
            raise CloudError(f"no run named {self.name} in {self.target.remote_dir} on {self.target.ssh.address}")
        if result.returncode != 0:
            raise ConnectionDropped(
                f"connection to {self.target.ssh.address} dropped mid-run (ssh exit {result.returncode}); the run "
                "keeps going there: reconnect with `tinylm cloud train --attach` (or `tinylm cloud logs`)")
        return self.exit_code()

    def exit_code(self) -> int:
        text = self.target.check(f"cat {shlex.quote(self.job_dir)}/exit_code 2>/dev/null || echo none",
                                 "reading the exit code").strip()
        if not re.fullmatch(r"-?[0-9]{1,10}", text):  # ASCII digits only: str.isdigit() also takes '²'
            raise CloudError(f"the run {self.name} on {self.target.ssh.address} stopped without an exit code "
                             "(killed, or the machine restarted); its last checkpoint is in "
                             f"{self.target.remote_dir}/{self.run_dir}")
        return int(text)

    def running(self) -> bool:
        jd = shlex.quote(self.job_dir)
        out = self.target.check(f'[ ! -f {jd}/exit_code ] && [ -s {jd}/pid ] && kill -0 "$(cat {jd}/pid)" '
                                "2>/dev/null && echo yes || echo no", "checking the run")
        return out.strip() == "yes"

    def last_lines(self, count: int = 5) -> list[str]:
        out = self.target.check(f"tail -n {int(count)} {shlex.quote(self.job_dir)}/train.log 2>/dev/null || true",
                                "reading the log")
        return [line.strip() for line in out.splitlines() if line.strip()]
