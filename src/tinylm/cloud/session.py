"""What the ``tinylm cloud`` commands do, on top of ``Target``, ``RemoteJob`` and the RunPod provider.

    state = CloudState.load(Path(".tinylm"))
    target = bring_up(state, UpOptions(gpu="NVIDIA GeForce RTX 4090", max_minutes=90))
    job = launch(target, state, cfg, LaunchOptions(name="a1"))
    finish(target, state, job)          # stream, fetch into runs/a1, raise on a failed run
    take_down(state, target)            # terminate the pod and forget it

Every pod we create is recorded in the state file before we wait for it, and terminated if it never
becomes reachable, so a crash or Ctrl-C between the two cannot leave an unknown pod billing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tinylm.atomic import atomic_write_text
from tinylm.cloud.job import RemoteJob, check_name
from tinylm.cloud.runpod_api import one_line
from tinylm.cloud.runpod_provider import DEFAULT_GPU, DEFAULT_IMAGE, CloudError, RunPodProvider
from tinylm.cloud.ssh import ProjectKeys, SSHTarget, probe
from tinylm.cloud.state import CloudState, check_local_out
from tinylm.cloud.target import DEFAULT_REMOTE_DIR, Target, install_watchdog, wait_for_ssh
from tinylm.config import RunConfig, validate
from tinylm.data import data_dir, read_text
from tinylm.errors import ConfigError, DataError, TinyLMError
from tinylm.training.rundir import CHECKPOINT_NAME

REMOTE_PYTHON_ENV = "TINYLM_CLOUD_REMOTE_PYTHON"  # e.g. a machine that already has torch and tinylm's deps
USER_DATA_DIR = ".tinylm/data/files"
CACHE_DATA_DIR = ".tinylm/data/cache"


@dataclass
class UpOptions:
    host: str | None = None
    gpu: str = DEFAULT_GPU
    image: str = DEFAULT_IMAGE
    disk_gb: int = 20
    max_minutes: float | None = None
    wait_timeout: float = 600.0
    remote_dir: str | None = None
    remote_python: str | None = None
    gpus: int = 1  # `cloud train` runs one DDP rank per GPU (torchrun)


@dataclass
class LaunchOptions:
    name: str | None = None
    out: str | None = None
    remote_python: str | None = None
    sample_chars: int = 0
    label: str = "custom"  # the preset name, for the default run name
    install_torch: bool = False  # on a machine without torch, install torch==(this laptop's version)


def state_dir() -> Path:
    return Path.cwd() / ".tinylm"


def target_from(state: CloudState, host: str | None = None, remote_dir: str | None = None) -> Target:
    """``--host`` if given, else the pod or host recorded by ``tinylm cloud up``."""
    keys = ProjectKeys.ensure(state.state_dir)
    t = state.target
    if host:
        ssh = SSHTarget.parse(host, keys)
        known = t.get("remote_dir") if (t.get("host"), t.get("port")) == (ssh.host, ssh.port) else None
        return Target(ssh, remote_dir or known or DEFAULT_REMOTE_DIR)
    if not t.get("host"):
        raise CloudError("nothing is up: start a pod with `tinylm cloud up` or pass --host user@ip[:port]")
    ssh = SSHTarget(t["user"], t["host"], int(t["port"]), keys, only_project_key=t.get("pod_id") is not None)
    return Target(ssh, remote_dir or t.get("remote_dir") or DEFAULT_REMOTE_DIR, t.get("pod_id"))


def _up_host(state: CloudState, opts: UpOptions) -> Target:
    if opts.max_minutes is not None:
        raise CloudError("--max-minutes stops RunPod pods only; on your own machine schedule "
                         "`sudo shutdown -h +MINUTES` there if you want it to power off")
    target = target_from(state, opts.host, opts.remote_dir)
    problem = probe(target.ssh)
    if problem:
        raise CloudError(problem)
    if state.target.get("pod_id"):  # keep the pod's record: forgetting it would leak a billing pod
        return target
    s = target.ssh
    same = (state.target.get("host"), state.target.get("port")) == (s.host, s.port)
    python = opts.remote_python or (state.target.get("remote_python") if same else None)  # `up --remote-python` sticks
    state.target = {"provider": "ssh", "user": s.user, "host": s.host, "port": s.port,
                    "remote_dir": target.remote_dir, "remote_python": python, "gpus": opts.gpus}
    state.save()
    return target


def _up_pod(state: CloudState, opts: UpOptions, log) -> Target:
    provider = RunPodProvider.from_env()
    keys = ProjectKeys.ensure(state.state_dir)
    name = f"tinylm-{Path.cwd().name}"[:60]
    pod_id = provider.create(name, opts.gpu, opts.image, opts.disk_gb, keys.public_key(), opts.gpus)
    try:
        state.target = {"provider": "runpod", "pod_id": pod_id, "gpu": opts.gpu, "gpus": opts.gpus,
                        "image": opts.image, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "remote_dir": opts.remote_dir or DEFAULT_REMOTE_DIR, "remote_python": opts.remote_python}
        state.save()  # recorded before waiting: `tinylm cloud down` can always find it
        log(f"created pod {pod_id} ({one_line(opts.gpu, 100)}); waiting for ssh (up to {opts.wait_timeout:.0f}s)")
        return _reach_pod(state, opts, provider, keys, pod_id)
    except BaseException as exc:  # anything at all, Ctrl-C and bugs included: a pod we cannot use must not bill on
        _abandon(state, provider, pod_id, exc)
        if isinstance(exc, TinyLMError):
            raise CloudError(f"{exc}; pod {pod_id} was terminated so it does not bill you") from None
        raise


def _reach_pod(state: CloudState, opts: UpOptions, provider: RunPodProvider, keys: ProjectKeys, pod_id: str) -> Target:
    """Wait for the new pod's ssh, record its address, install the --max-minutes watchdog."""
    ssh = wait_for_ssh(provider, pod_id, keys, opts.wait_timeout)
    state.target.update(user=ssh.user, host=ssh.host, port=ssh.port)
    state.save()
    target = Target(ssh, state.target["remote_dir"], pod_id, provider)
    if opts.max_minutes is not None:
        state.target["watchdog_pid"] = install_watchdog(target, opts.max_minutes)
        stops_at = time.gmtime(time.time() + opts.max_minutes * 60)
        state.target["stops_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", stops_at)
        state.save()
    return target


def _abandon(state: CloudState, provider: RunPodProvider, pod_id: str, why: BaseException) -> None:
    """Terminate the pod and forget it; if RunPod cannot be told, keep its record so `cloud down` can retry."""
    try:
        provider.terminate(pod_id)
    except TinyLMError as exc:
        raise CloudError(f"{one_line(why) or type(why).__name__}; terminating pod {pod_id} failed too ({exc}): "
                         "it may still bill you, run `tinylm cloud down`") from None
    state.target = {}
    with contextlib.suppress(TinyLMError):  # the pod is gone; a record left behind only says so at `cloud down`
        state.save()


def bring_up(state: CloudState, opts: UpOptions, log=print) -> Target:
    """Reuse what is up, or connect to ``--host``, or create a RunPod pod and wait until ssh answers."""
    if state.target.get("pod_id") and not state.target.get("host") and not opts.host:
        raise CloudError(f"pod {state.target['pod_id']} was created but never reached over ssh; "
                         "`tinylm cloud down` terminates it, then try again")
    if state.target.get("host") and not opts.host:
        log(f"already up: {describe(state)} (`tinylm cloud down` first to start another)")
        return target_from(state, remote_dir=opts.remote_dir)
    target = _up_host(state, opts) if opts.host else _up_pod(state, opts, log)
    log(f"up: {describe(state) if target.pod_id else 'ssh host ' + target.ssh.address}")
    return target


def describe(state: CloudState) -> str:
    t = state.target
    where = f"{t.get('user')}@{t.get('host')}:{t.get('port')}"
    if t.get("pod_id"):
        stops = f", stops itself at {one_line(t['stops_at'], 40)}" if t.get("stops_at") else ""
        return f"RunPod pod {t['pod_id']} ({one_line(t.get('gpu'), 100)}) at {where}{stops}"
    return f"ssh host {where}"


def pod_status(pod_id: str) -> str:
    """RunPod's view of the pod (running, stopped by the watchdog, gone) and its price."""
    try:
        pod = RunPodProvider.from_env().pod(pod_id)
    except CloudError as exc:
        return f"runpod: unknown ({exc})"
    if pod is None:
        return "runpod: the pod no longer exists (`tinylm cloud down` forgets it)"
    return f"runpod: {one_line(pod.get('desiredStatus', '?'), 40)}, ${one_line(pod.get('costPerHr', '?'), 20)}/h"


def take_down(state: CloudState, target: Target | None, log=print) -> None:
    """Terminate ``target``'s pod, or the recorded one (idempotent), and forget it; ssh hosts are only forgotten.

    A ``--host`` target never touches a recorded pod: that pod stays up and recorded."""
    recorded = state.target.get("pod_id")
    pod_id = target.pod_id if target is not None else recorded
    if pod_id:
        provider = (target.provider if target else None) or RunPodProvider.from_env()
        gone = provider.terminate(pod_id)
        log(f"terminated pod {pod_id}" if gone else f"pod {pod_id} was already gone")
    elif target is not None or state.target:
        log("nothing to terminate on an ssh host (it is your machine)")
    else:
        log("nothing is up")
    if pod_id == recorded:
        state.target, state.job = {}, {}
        state.save()


def check_run_inputs(cfg: RunConfig) -> None:
    """The config and the --data file, checked here before any pod is made or byte is sent."""
    validate(cfg)
    if cfg.train.init_from:  # a local run directory: the machine has no copy of it
        raise ConfigError("init_from is not sent to the cloud machine; fine-tune locally with tinylm train "
                          "--init-from, or leave init_from unset")
    if cfg.train.data:
        read_text(Path(cfg.train.data).expanduser())  # missing, empty, not UTF-8: DataError now, not remotely


def _push_data(target: Target, cfg: RunConfig, job: RemoteJob) -> None:
    """Send the corpus along: the user's --data file, or our cached Tiny Shakespeare."""
    if cfg.train.data:
        path = Path(cfg.train.data).expanduser()
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
        target.push([str(path.resolve())], USER_DATA_DIR + "/")
        cfg.train.data = f"{USER_DATA_DIR}/{path.name}"  # relative to remote_dir, where the run starts
        return
    cached = data_dir() / "tinyshakespeare.txt"
    if cached.is_file():
        target.push([str(cached)], CACHE_DATA_DIR + "/")
        job.data_dir = CACHE_DATA_DIR


def launch(target: Target, state: CloudState, cfg: RunConfig, opts: LaunchOptions, log=print) -> RemoteJob:
    """Sync the project, data and config (a file), install tinylm, start the run detached."""
    check_run_inputs(cfg)
    name = check_name(opts.name or f"{opts.label}-{time.strftime('%Y%m%d-%H%M%S')}")
    local_out = Path(check_local_out(opts.out or f"runs/{name}"))
    if (local_out / CHECKPOINT_NAME).exists():
        raise TinyLMError(f"{local_out} already holds a run; choose another --name or --out")
    python = opts.remote_python or os.environ.get(REMOTE_PYTHON_ENV) or state.target.get("remote_python")
    job = RemoteJob(target, name, python, sample_chars=opts.sample_chars, nproc=int(state.target.get("gpus", 1)),
                    install_torch=opts.install_torch)
    target.sync(log=log)
    _push_data(target, cfg, job)
    config_file = state.state_dir / "jobs" / name / "config.json"
    atomic_write_text(config_file, json.dumps(cfg.to_dict(), indent=2))
    target.push([str(config_file)], job.job_dir + "/")
    job.setup()
    job.start()
    state.job = {"name": name, "remote_dir": target.remote_dir, "python": python, "data_dir": job.data_dir,
                 "local_out": str(local_out), "address": target.ssh.address}
    state.save()
    log(f"started run {name}; streaming its log (Ctrl-C stops watching; the run goes on)")
    return job


def job_from(state: CloudState, target: Target, name: str | None = None) -> tuple[RemoteJob, Path]:
    """The last launched run (or ``name``), to reattach to."""
    if not state.job and not name:
        raise CloudError("no run to attach to: start one with `tinylm cloud train` (or give --name NAME)")
    job = state.job if not name or state.job.get("name") == name else {"name": name}
    name = check_name(job["name"])  # the state loader has checked it; --name is checked here
    out = Path(check_local_out(job.get("local_out") or f"runs/{name}"))
    if job.get("remote_dir") and target.ssh.address == job.get("address"):
        target = dataclasses.replace(target, remote_dir=job["remote_dir"])  # where that run was started
    return RemoteJob(target, name, job.get("python"), job.get("data_dir")), out


def finish(target: Target, job: RemoteJob, local_out: Path, log=print) -> None:
    """Stream to the end, fetch the run directory, and fail with the exit code and last lines if it failed."""
    code = job.follow()
    try:
        target.fetch(job.run_dir, local_out)
        fetched = f"; fetched into {local_out}"
    except CloudError as exc:
        if code == 0:
            raise
        fetched = f"; nothing to fetch ({exc})"
    if code != 0:
        lines = " | ".join(job.last_lines(4))
        raise CloudError(f"the remote run {job.name} failed with exit code {code}{fetched}; last log lines: {lines}")
    log(f"run {job.name} finished; fetched into {local_out}")
