"""RunPod pods through RunPod's GraphQL API (``pip install 'tinylm[cloud]'`` for the official SDK's query text).

    provider = RunPodProvider.from_env()          # reads RUNPOD_API_KEY; never prints or stores it
    pod_id = provider.create("tinylm", "NVIDIA GeForce RTX 4090", DEFAULT_IMAGE, 20, public_key)
    provider.ssh_endpoint(pod_id)                 # ("203.0.113.7", 22022) once the pod has a public port for 22/tcp
    provider.terminate(pod_id)                    # False if it was already gone

RunPod's ``ssh.runpod.io`` proxy only serves interactive terminals (no commands, no rsync), so pods are
created with a public IP and 22/tcp exposed, and reached directly. Queries go to
``$RUNPOD_API_BASE_URL`` (default https://api.runpod.io) through ``runpod_api.graphql`` (size cap,
deadline); the tests point it at a local stand-in. Every answer is checked for the shape we read.

The SDK's query builders paste values between double quotes, so every string we hand them goes
through ``gql()`` first (GraphQL string escapes are JSON's): a directory named
``q", gpuCount: 8, name: "z`` stays a name instead of becoming arguments.
"""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace
from typing import Any

from tinylm.cloud.runpod_api import KEY_HELP, CloudError, graphql, one_line, unexpected

__all__ = ["DEFAULT_GPU", "DEFAULT_IMAGE", "KEY_HELP", "CloudError", "RunPodProvider", "gql", "valid_pod_id"]

DEFAULT_GPU = "NVIDIA GeForce RTX 4090"
DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
CONSOLE = "https://www.runpod.io/console/pods"
_POD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def gql(value: str) -> str:
    """``value`` escaped for the inside of a GraphQL string literal (quotes, backslashes, control chars)."""
    return json.dumps(str(value))[1:-1]


def valid_pod_id(value: object) -> bool:
    """What we record and later send back: letters, digits, '_' and '-' (RunPod's ids look like 'abc123xyz')."""
    return isinstance(value, str) and _POD_ID.fullmatch(value) is not None


def _sdk() -> SimpleNamespace:
    """The SDK's GraphQL builders: ``gpus`` and ``pods`` queries, pod ``mutations``."""
    try:
        from runpod.api.mutations import pods as mutations
        from runpod.api.queries import gpus, pods
    except ImportError:
        raise CloudError("the RunPod SDK is not installed: pip install 'tinylm[cloud]' (or use --host)") from None
    return SimpleNamespace(gpus=gpus, pods=pods, mutations=mutations)


def _gpu_ids(data: dict, doing: str) -> list[str]:
    gpus = data.get("gpuTypes")
    if not isinstance(gpus, list) or not all(isinstance(g, dict) and isinstance(g.get("id"), str) for g in gpus):
        raise unexpected(doing, gpus)
    return [g["id"] for g in gpus]


class RunPodProvider:
    """Create, inspect and terminate pods. The key lives only in this object and the request header."""

    def __init__(self, api_key: str):
        self._api_key = api_key

    def __repr__(self) -> str:  # never show the key
        return "RunPodProvider(api_key=<hidden>)"

    @classmethod
    def from_env(cls) -> RunPodProvider:
        key = os.environ.get("RUNPOD_API_KEY", "").strip()
        if not key:
            raise CloudError(f"RUNPOD_API_KEY is not set: {KEY_HELP}")
        return cls(key)

    def _call(self, query: str, doing: str) -> dict[str, Any]:
        return graphql(self._api_key, query, doing)

    def gpu_types(self) -> list[str]:
        doing = "listing GPU types"
        return sorted(_gpu_ids(self._call(_sdk().gpus.QUERY_GPU_TYPES, doing), doing))

    def check_gpu(self, gpu: str) -> None:
        doing = "checking the GPU type"
        if _gpu_ids(self._call(_sdk().gpus.generate_gpu_query(gql(gpu)), doing), doing):
            return
        valid = one_line(", ".join(self.gpu_types()), 3000)
        raise CloudError(f"unknown GPU type {one_line(gpu, 100)!r}; valid --gpu values: {valid}")

    def create(self, name: str, gpu: str, image: str, disk_gb: int, public_key: str, gpu_count: int = 1) -> str:
        """A pod with a public IP, sshd on 22/tcp and our key authorised; returns its id.

        An id we could not record (so `cloud down` could not find it later) is terminated at once."""
        self.check_gpu(gpu)
        mutation = _sdk().mutations.generate_pod_deployment_mutation(
            gql(name), gql(image), gql(gpu), "ALL", support_public_ip=True, start_ssh=True, gpu_count=int(gpu_count),
            volume_in_gb=0, container_disk_in_gb=int(disk_gb), min_vcpu_count=1, min_memory_in_gb=1, docker_args="",
            ports="22/tcp", volume_mount_path="/runpod-volume", env={"PUBLIC_KEY": gql(public_key)})
        pod = self._call(mutation, "creating the pod").get("podFindAndDeployOnDemand")
        if pod is None:
            raise CloudError("RunPod did not create a pod (no machine free?); try another --gpu or later")
        if not isinstance(pod, dict) or "id" not in pod:
            raise unexpected("creating the pod", pod)
        if not valid_pod_id(pod["id"]):
            raise self._refuse_id(pod["id"])
        return pod["id"]

    def _refuse_id(self, pod_id: object) -> CloudError:
        try:
            self._call(_sdk().mutations.generate_pod_terminate_mutation(gql(str(pod_id))), "terminating the pod")
            fate = "it was terminated at once"
        except CloudError as exc:
            fate = f"terminating it failed ({exc}): terminate it yourself at {CONSOLE}"
        return CloudError(f"RunPod answered a pod id tinylm cannot record ({one_line(repr(pod_id), 80)}); {fate}")

    def pod(self, pod_id: str) -> dict[str, Any] | None:
        """The pod's record, or None once it is gone."""
        doing = "reading the pod"
        pod = self._call(_sdk().pods.generate_pod_query(gql(pod_id)), doing).get("pod")
        if pod is not None and not isinstance(pod, dict):
            raise unexpected(doing, pod)
        return pod

    def ssh_endpoint(self, pod_id: str) -> tuple[str, int] | None:
        """(public ip, public port) mapped to the pod's 22/tcp, or None while it is starting."""
        pod = self.pod(pod_id)
        if pod is None:
            raise CloudError(f"pod {pod_id} no longer exists on RunPod; start another with `tinylm cloud up`")
        try:
            for port in ((pod.get("runtime") or {}).get("ports")) or []:
                if port.get("privatePort") == 22 and port.get("isIpPublic") and port.get("type") == "tcp":
                    return str(port["ip"]), int(port["publicPort"])
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
            raise CloudError(f"RunPod answered an unreadable port list for pod {pod_id}") from None
        return None

    def terminate(self, pod_id: str) -> bool:
        """Terminate (stop billing and delete the pod). False if it was already gone."""
        if self.pod(pod_id) is None:
            return False
        self._call(_sdk().mutations.generate_pod_terminate_mutation(gql(pod_id)), "terminating the pod")
        return True
