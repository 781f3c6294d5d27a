"""``tinylm cloud``: train on a rented GPU (a RunPod pod) or any SSH machine.

    export RUNPOD_API_KEY=...                     # https://www.runpod.io/console/user/settings
    tinylm cloud up --gpu "NVIDIA GeForce RTX 4090" --max-minutes 120
    tinylm cloud train --preset nanogpt-char --down     # sync, install, train, fetch into runs/, terminate
    tinylm cloud train --attach                         # after a dropped connection: stream again, fetch
    tinylm cloud status | logs | ssh | down
    tinylm cloud train --host ubuntu@203.0.113.7:22 --preset attention-3   # any SSH machine
    tinylm cloud export-sky --preset nanogpt-char --accelerators A100:1    # a SkyPilot task instead
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

from tinylm.errors import TinyLMError

MAX_MINUTES = 366 * 24 * 60  # a watchdog a year away is as good as none; beyond that the date math overflows
MAX_WAIT_S = 24 * 3600


def _add_host(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", metavar="USER@IP[:PORT]", help="any SSH machine instead of the RunPod pod")


def _add_up_options(parser: argparse.ArgumentParser) -> None:
    from tinylm.cloud.runpod_provider import DEFAULT_GPU, DEFAULT_IMAGE

    _add_host(parser)
    parser.add_argument("--gpu", default=DEFAULT_GPU, metavar="TYPE",
                        help=f"RunPod GPU type id (default: {DEFAULT_GPU})")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="pod image with PyTorch (default: %(default)s)")
    parser.add_argument("--gpus", type=int, default=1, metavar="N",
                        help="GPUs on the pod (or on --host); `train` then runs torchrun on all of them (DDP)")
    parser.add_argument("--disk", type=int, default=20, metavar="GB", help="container disk in GB (default: 20)")
    parser.add_argument("--max-minutes", type=float, metavar="N",
                        help="a watchdog on the pod stops it after N minutes, even if this laptop is gone")
    parser.add_argument("--wait-timeout", type=float, default=600, metavar="S",
                        help="seconds to wait for the pod's ssh (default: 600)")
    parser.add_argument("--remote-dir", metavar="DIR", help="project dir on the machine (default: ~/tinylm)")
    parser.add_argument("--remote-python", metavar="PATH",
                        help="use this remote interpreter (it has torch) instead of a venv + pip install -e . "
                             "(also $TINYLM_CLOUD_REMOTE_PYTHON)")


def _check_span(option: str, value: float | None, most: float) -> None:
    """A finite, positive number of seconds or minutes (argparse's float() also takes 'nan' and 'inf')."""
    if value is not None and not (math.isfinite(value) and 0 < value <= most):
        raise TinyLMError(f"{option} must be a number above 0 and at most {most:g}, got {value}")


def _up_options(args: argparse.Namespace):
    from tinylm.cloud.session import UpOptions

    _check_span("--max-minutes", args.max_minutes, MAX_MINUTES)
    _check_span("--wait-timeout", args.wait_timeout, MAX_WAIT_S)
    if args.gpus < 1:
        raise TinyLMError(f"--gpus must be at least 1, got {args.gpus}")
    return UpOptions(args.host, args.gpu, args.image, args.disk, args.max_minutes, args.wait_timeout,
                     args.remote_dir, args.remote_python, gpus=args.gpus)


def cmd_up(args: argparse.Namespace) -> int:
    from tinylm.cloud.session import CloudState, bring_up, state_dir

    bring_up(CloudState.load(state_dir()), _up_options(args))
    return 0


def _connect(state, args):
    """The machine to train on; with nothing up and no --host, create a pod first (one command)."""
    from tinylm.cloud.session import bring_up, target_from

    if args.attach:
        return target_from(state, args.host, args.remote_dir)
    if args.host or not state.target.get("host"):
        return bring_up(state, _up_options(args))
    return target_from(state, remote_dir=args.remote_dir)


def _run_training(state, args, cfg, ctx: dict) -> None:
    from tinylm.cloud.session import LaunchOptions, finish, job_from, launch

    ctx["target"] = target = _connect(state, args)
    if args.attach:
        ctx["job"], ctx["out"] = job_from(state, target, args.name)
    else:
        opts = LaunchOptions(args.name, args.out, args.remote_python, args.sample_chars, args.preset or "custom",
                             args.install_torch)
        ctx["job"] = launch(target, state, cfg, opts)
        ctx["out"] = Path(state.job["local_out"])
    finish(target, ctx["job"], ctx["out"])


def _after_interrupt(args, ctx: dict) -> None:
    target, job = ctx.get("target"), ctx.get("job")
    if args.down and target is not None and job is not None:
        try:  # keep what the run has saved so far before the pod goes
            target.fetch(job.run_dir, ctx["out"])
            print(f"fetched the run so far into {ctx['out']}", file=sys.stderr)
        except (TinyLMError, KeyboardInterrupt):
            print("could not fetch the run before terminating", file=sys.stderr)
    elif target is not None:
        print(f"tinylm: interrupted; the run keeps going on {target.ssh.address}: follow it with "
              "`tinylm cloud train --attach`, stop paying with `tinylm cloud down`", file=sys.stderr)


def _down_after_train(state, ctx: dict) -> None:
    from tinylm.cloud.session import take_down

    try:
        take_down(state, ctx.get("target"))
    except (TinyLMError, KeyboardInterrupt) as exc:
        print(f"tinylm: error: could not terminate the pod ({exc}); it may still bill you: run "
              "`tinylm cloud down`", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    from tinylm.cli.common import config_from_args
    from tinylm.cloud.job import ConnectionDropped, check_name
    from tinylm.cloud.session import CloudState, check_run_inputs, state_dir
    from tinylm.cloud.state import check_local_out

    state = CloudState.load(state_dir())
    cfg = None if args.attach else config_from_args(args)[0]  # a bad config fails here, before any pod
    if cfg is not None:
        check_run_inputs(cfg)  # and a bad --data file too, before any pod or upload
    if args.name is not None:
        check_name(args.name)
    if args.out is not None:
        check_local_out(args.out)
    ctx: dict = {}
    down = args.down
    try:
        _run_training(state, args, cfg, ctx)
        return 0
    except ConnectionDropped as exc:
        if down:
            down = False  # the run goes on: terminating now would lose it
            raise ConnectionDropped(f"{exc}; the pod stays up: reattach with `tinylm cloud train --attach "
                                    "--down`, or stop it with `tinylm cloud down`") from None
        raise
    except KeyboardInterrupt:
        _after_interrupt(args, ctx)
        return 130
    finally:
        if down and (ctx.get("target") is not None or state.target):
            _down_after_train(state, ctx)


def cmd_status(args: argparse.Namespace) -> int:
    from tinylm.cloud.session import CloudState, describe, job_from, pod_status, state_dir, target_from
    from tinylm.cloud.ssh import probe

    state = CloudState.load(state_dir())
    if not state.target and not args.host:
        print("nothing is up (start with `tinylm cloud up`, or pass --host)")
        return 0
    target = target_from(state, args.host)
    print(describe(state) if not args.host else f"ssh host {target.ssh.address}")
    if target.pod_id:
        print(pod_status(target.pod_id))
    problem = probe(target.ssh)
    print("ssh: ok" if problem is None else f"ssh: {problem}")
    if problem is None and state.job:
        job, out = job_from(state, target)
        where = "running" if job.running() else "not running"
        print(f"last run: {job.name} ({where}; fetches into {out})")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    import shlex

    from tinylm.cloud.session import CloudState, state_dir, target_from
    from tinylm.cloud.ssh import clean_env

    target = target_from(CloudState.load(state_dir()), args.host)
    words = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = shlex.join(words) if words else None
    return subprocess.call(target.ssh.ssh_argv(command, tty=command is None), env=clean_env())


def cmd_logs(args: argparse.Namespace) -> int:
    from tinylm.cloud.session import CloudState, job_from, state_dir, target_from

    state = CloudState.load(state_dir())
    job, _ = job_from(state, target_from(state, args.host), args.name)
    code = job.follow()
    print(f"run {job.name} ended with exit code {code}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from tinylm.cloud.session import CloudState, state_dir, take_down

    take_down(CloudState.load(state_dir()), None)
    return 0


def cmd_export_sky(args: argparse.Namespace) -> int:
    import time

    from tinylm.cli.common import config_from_args
    from tinylm.cloud.job import check_name
    from tinylm.cloud.sky import write_sky_task

    cfg = config_from_args(args)[0]
    name = check_name(args.name or f"{args.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(args.out or f"{name}.yaml")
    config_file = write_sky_task(cfg, name, out, args.accelerators)
    print(f"wrote {out} (and its config {config_file}); launch it with: sky launch -c tinylm {out}")
    return 0


def register(subparsers) -> None:
    from tinylm.cli.common import add_config_arguments

    cloud = subparsers.add_parser("cloud", help="train on a RunPod GPU pod or any SSH machine",
                                  description="Train on a rented GPU (RunPod) or any SSH machine.")
    sub = cloud.add_subparsers(dest="cloud_command", required=True, metavar="ACTION")
    up = sub.add_parser("up", help="create a RunPod pod (or check --host) and wait for ssh")
    _add_up_options(up)
    up.set_defaults(handler=cmd_up)
    train = sub.add_parser("train", help="sync, install, train remotely with live logs, fetch the run")
    add_config_arguments(train)
    _add_up_options(train)
    train.add_argument("--name", help="run name (default: PRESET-DATE-TIME); the run comes back to runs/NAME")
    train.add_argument("--out", metavar="DIR", help="local run directory, inside this project (default: runs/NAME)")
    train.add_argument("--down", action="store_true", help="terminate the pod when the run ends, whatever happens")
    train.add_argument("--attach", action="store_true", help="reconnect to the last run: stream, then fetch")
    train.add_argument("--sample-chars", type=int, default=0, metavar="N", help="characters to sample at the end")
    train.add_argument("--install-torch", action="store_true",
                       help="on a machine without torch, pip install this laptop's torch version (GBs); "
                            "without it such a machine is an error")
    train.set_defaults(handler=cmd_train)
    for name, handler, text in [("status", cmd_status, "what is up, and the last run"),
                                ("down", cmd_down, "terminate the pod (idempotent)")]:
        p = sub.add_parser(name, help=text)
        _add_host(p)
        p.set_defaults(handler=handler)
    ssh = sub.add_parser("ssh", help="a shell on the machine (or: ssh -- COMMAND)")
    _add_host(ssh)
    ssh.add_argument("command", nargs=argparse.REMAINDER, help="a command to run instead of a shell")
    ssh.set_defaults(handler=cmd_ssh)
    logs = sub.add_parser("logs", help="stream the last run's log until it ends")
    _add_host(logs)
    logs.add_argument("--name", help="another run than the last one")
    logs.set_defaults(handler=cmd_logs)
    sky = sub.add_parser("export-sky", help="write a SkyPilot task YAML for the same run")
    add_config_arguments(sky)
    sky.add_argument("--name", help="run name")
    sky.add_argument("--accelerators", default="A100:1", help="SkyPilot accelerators (default: A100:1)")
    sky.add_argument("--out", metavar="FILE", help="the YAML to write (default: NAME.yaml)")
    sky.set_defaults(handler=cmd_export_sky)
