"""RunPod pods through the official ``runpod`` SDK (``pip install 'tinylm[cloud]'``).

    provider = RunPodProvider.from_env()          # reads RUNPOD_API_KEY; never prints or stores it
    pod_id = provider.create("tinylm", "NVIDIA GeForce RTX 4090", DEFAULT_IMAGE, 20, public_key)
    provider.ssh_endpoint(pod_id)                 # ("203.0.113.7", 22022) once the pod has a public port for 22/tcp
    provider.terminate(pod_id)                    # False if it was already gone

RunPod's ``ssh.runpod.io`` proxy only serves interactive terminals (no commands, no rsync), so pods are
created with a public IP and 22/tcp exposed, and reached directly. The SDK sends GraphQL to
``$RUNPOD_API_BASE_URL`` (default https://api.runpod.io); the tests point it at a local stand-in.

The SDK pastes values between double quotes of its query text, so every string we hand it goes
through ``gql()`` first (GraphQL string escapes are JSON's): a directory named
``q", gpuCount: 8, name: "z`` stays a name instead of becoming arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from tinylm.errors import TinyLMError

DEFAULT_GPU = "NVIDIA GeForce RTX 4090"
DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
KEY_HELP = ("create an API key at https://www.runpod.io/console/user/settings (API Keys), then "
            "`export RUNPOD_API_KEY=...`; or use --host user@ip[:port] for any SSH machine")


def gql(value: str) -> str:
    """``value`` escaped for the inside of a GraphQL string literal (quotes, backslashes, control chars)."""
    return json.dumps(str(value))[1:-1]


class CloudError(TinyLMError):
    """A cloud problem the user can fix: key, GPU type, reachability, a failed or dropped remote run."""


def _sdk():
    try:
        import runpod
    except ImportError:
        raise CloudError("the RunPod SDK is not installed: pip install 'tinylm[cloud]' (or use --host)") from None
    return runpod


class RunPodProvider:
    """Create, inspect and terminate pods. The key lives only in this object and the SDK's request header."""

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

    @contextlib.contextmanager
    def _api(self, doing: str) -> Iterator[Any]:
        """The SDK with our key set, its errors turned into one-line CloudErrors."""
        runpod = _sdk()
        runpod.api_key = self._api_key  # terminate_pod/stop_pod take no key argument: the SDK reads this
        try:
            yield runpod
        except runpod.error.AuthenticationError:
            raise CloudError(f"RunPod rejected the API key (401 Unauthorized) while {doing}: "
                             f"check RUNPOD_API_KEY or {KEY_HELP}") from None
        except runpod.error.QueryError as exc:
            raise CloudError(f"RunPod refused {doing}: {exc}") from None
        except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors
            base = os.environ.get("RUNPOD_API_BASE_URL", "https://api.runpod.io")
            raise CloudError(f"cannot reach the RunPod API at {base} while {doing} ({type(exc).__name__}); "
                             "check your network") from None

    def gpu_types(self) -> list[str]:
        with self._api("listing GPU types") as runpod:
            return sorted(gpu["id"] for gpu in runpod.get_gpus(api_key=self._api_key))

    def check_gpu(self, gpu: str) -> None:
        with self._api("checking the GPU type") as runpod:
            try:
                runpod.get_gpu(gql(gpu), api_key=self._api_key)
                return
            except ValueError:
                pass
        raise CloudError(f"unknown GPU type {gpu!r}; valid --gpu values: {', '.join(self.gpu_types())}")

    def create(self, name: str, gpu: str, image: str, disk_gb: int, public_key: str, gpu_count: int = 1) -> str:
        """A pod with a public IP, sshd on 22/tcp and our key authorised; returns its id."""
        self.check_gpu(gpu)
        with self._api("creating the pod") as runpod:
            pod = runpod.create_pod(gql(name), gql(image), gql(gpu), cloud_type="ALL", support_public_ip=True,
                                    start_ssh=True, gpu_count=int(gpu_count), container_disk_in_gb=int(disk_gb),
                                    volume_in_gb=0, ports="22/tcp", env={"PUBLIC_KEY": gql(public_key)})
        if not pod or not pod.get("id"):
            raise CloudError(f"RunPod did not create a pod (answer: {pod!r}); try another --gpu or later")
        return pod["id"]

    def pod(self, pod_id: str) -> dict[str, Any] | None:
        """The pod's record, or None once it is gone."""
        with self._api("reading the pod") as runpod:
            return runpod.get_pod(gql(pod_id), api_key=self._api_key)

    def ssh_endpoint(self, pod_id: str) -> tuple[str, int] | None:
        """(public ip, public port) mapped to the pod's 22/tcp, or None while it is starting."""
        pod = self.pod(pod_id)
        if pod is None:
            raise CloudError(f"pod {pod_id} no longer exists on RunPod; start another with `tinylm cloud up`")
        try:
            for port in ((pod.get("runtime") or {}).get("ports")) or []:
                if port.get("privatePort") == 22 and port.get("isIpPublic") and port.get("type") == "tcp":
                    return str(port["ip"]), int(port["publicPort"])
        except (AttributeError, KeyError, TypeError, ValueError):
            raise CloudError(f"RunPod answered an unreadable port list for pod {pod_id}") from None
        return None

    def terminate(self, pod_id: str) -> bool:
        """Terminate (stop billing and delete the pod). False if it was already gone."""
        if self.pod(pod_id) is None:
            return False
        with self._api("terminating the pod") as runpod:
            runpod.terminate_pod(gql(pod_id))
        return True
