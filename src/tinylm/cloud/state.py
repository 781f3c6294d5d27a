"""The project's cloud state, ``.tinylm/cloud.json`` (git-ignored): which pod or host, and the last job.

    state = CloudState.load(Path(".tinylm"))
    state.target            # {"provider": "runpod", "pod_id": "...", "user": "root", "host": ..., "port": ...}
    state.job               # {"name": ..., "remote_dir": ..., "python": ..., "local_out": ...}
    state.save()

Never holds the API key: only ids, addresses and paths. The file is checked when read (it is plain
JSON anyone can edit): a user or host that ssh would take for an option, a pod id that is not an id,
a wrong type, all refuse to load with one line naming the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinylm.atomic import atomic_write_text
from tinylm.errors import TinyLMError

STATE_NAME = "cloud.json"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TYPES: dict[str, tuple[type, ...]] = {
    "provider": (str,), "pod_id": (str,), "user": (str,), "host": (str,), "port": (int,), "remote_dir": (str,),
    "remote_python": (str, type(None)), "gpus": (int,), "gpu": (str,), "image": (str,), "created": (str,),
    "stops_at": (str,), "watchdog_pid": (int,), "name": (str,), "python": (str, type(None)),
    "data_dir": (str, type(None)), "local_out": (str,), "address": (str,),
}


@dataclass
class CloudState:
    state_dir: Path
    target: dict[str, Any] = field(default_factory=dict)  # empty: nothing up
    job: dict[str, Any] = field(default_factory=dict)  # the last `cloud train`, for --attach and logs

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_NAME

    @classmethod
    def load(cls, state_dir: Path) -> CloudState:
        path = state_dir / STATE_NAME
        if not path.is_file():
            return cls(state_dir)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TinyLMError(f"cloud state {path} is not valid JSON ({exc}); fix or delete it") from None
        if not isinstance(data, dict):
            raise TinyLMError(f"cloud state {path} must be a JSON object; fix or delete it")
        target, job = data.get("target") or {}, data.get("job") or {}
        check_state(path, target, job)
        return cls(state_dir, dict(target), dict(job))

    def save(self) -> None:
        text = json.dumps({"target": self.target, "job": self.job}, indent=2)
        atomic_write_text(self.path, text + "\n")


def check_state(path: Path, target: Any, job: Any) -> None:
    """Types, ids and an ssh address that cannot inject options; TinyLMError naming the bad key."""
    from tinylm.cloud.job import check_name
    from tinylm.cloud.ssh import check_address

    def bad(key: str, why: str) -> TinyLMError:
        return TinyLMError(f"cloud state {path} has a bad {key} ({why}); fix or delete it")

    for section in (target, job):
        if not isinstance(section, dict):
            raise bad("section", f"{type(section).__name__}, not an object")
        for key, value in section.items():
            expected = _TYPES.get(key)  # keys a newer tinylm may add are kept, unchecked
            if expected and (not isinstance(value, expected) or (isinstance(value, bool) and expected == (int,))):
                raise bad(key, f"wrong type {type(value).__name__}")
    if "pod_id" in target and not _ID_RE.match(target["pod_id"]):
        raise bad("pod_id", repr(target["pod_id"]))
    if "host" in target:
        try:
            check_address(target.get("user"), target["host"], target.get("port"))
        except TinyLMError as exc:
            raise bad("address", str(exc)) from None
    if "name" in job:
        try:
            check_name(job["name"])
        except TinyLMError as exc:
            raise bad("job name", str(exc)) from None
