"""Train on a rented GPU (a RunPod pod) or any SSH machine; see ``tinylm cloud --help``.

The notebook's helpers, working for real (after ``tinylm cloud up``, or with ``host="user@ip:port"``)::

    from tinylm.cloud import sync_to_pod, run_on_pod
    sync_to_pod()                                              # rsync the tracked files to ~/tinylm on the pod
    run_on_pod("python -m tinylm train --preset attention-1")  # output streamed; True on exit code 0

Underneath, a typed API: ``Target`` (``sync``, ``run``, ``fetch``, ``terminate``), ``RemoteJob`` and
``RunPodProvider``. No ``ssh.runpod.io`` proxy: pods are reached on their public IP and mapped 22/tcp port.
"""

from __future__ import annotations

import sys

from tinylm.cloud.job import RemoteJob
from tinylm.cloud.runpod_provider import CloudError, RunPodProvider
from tinylm.cloud.ssh import ProjectKeys, SSHTarget
from tinylm.cloud.target import Target
from tinylm.errors import TinyLMError

__all__ = ["sync_to_pod", "run_on_pod", "current_target", "Target", "RemoteJob", "RunPodProvider",
           "SSHTarget", "ProjectKeys", "CloudError"]


def current_target(host: str | None = None) -> Target:
    """The machine ``tinylm cloud up`` recorded for this directory, or ``host`` (``user@ip[:port]``)."""
    from tinylm.cloud.session import CloudState, state_dir, target_from

    return target_from(CloudState.load(state_dir()), host)


def sync_to_pod(host: str | None = None) -> bool:
    """Copy this tinylm checkout's tracked files (``git ls-files``) to the pod. True when it worked."""
    try:
        current_target(host).sync()
    except TinyLMError as exc:
        print(f"tinylm: error: {exc}", file=sys.stderr)
        return False
    return True


def run_on_pod(command: str, host: str | None = None) -> bool:
    """Run shell text in the synced project dir on the pod, streaming its output. True on exit code 0."""
    try:
        return current_target(host).run(command).returncode == 0
    except TinyLMError as exc:
        print(f"tinylm: error: {exc}", file=sys.stderr)
        return False
