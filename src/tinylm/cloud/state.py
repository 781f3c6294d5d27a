"""The project's cloud state, ``.tinylm/cloud.json`` (git-ignored): which pod or host, and the last job.

    state = CloudState.load(Path(".tinylm"))
    state.target            # {"provider": "runpod", "pod_id": "...", "user": "root", "host": ..., "port": ...}
    state.job               # {"name": ..., "remote_dir": ..., "python": ..., "local_out": ...}
    state.save()

Never holds the API key: only ids, addresses and paths. The file is checked when read (it is plain
JSON anyone can edit): a user or host that ssh would take for an option, a pod id that is not an id,
a job without a name, a local run directory outside the project, a wrong type, JSON nested too deep,
a directory where the file should be: all refuse to load with one line naming the problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from tinylm.atomic import atomic_write_text
from tinylm.cloud.runpod_api import one_line
from tinylm.cloud.runpod_provider import valid_pod_id
from tinylm.errors import TinyLMError
from tinylm.jsonfile import MAX_JSON_BYTES, read_regular_file

STATE_NAME = "cloud.json"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
        if state_dir.exists() and not state_dir.is_dir():
            raise TinyLMError(f"{state_dir} must be a directory (tinylm cloud keeps its state and ssh key there); "
                              "move that file away")
        if not path.exists() and not path.is_symlink():
            return cls(state_dir)
        try:  # bounded and never blocking: a FIFO or /dev/zero in its place is refused, not read for ever
            raw = read_regular_file(path, MAX_JSON_BYTES)
            if raw is None:
                raise TinyLMError(f"cannot read the cloud state {path} (not a regular file); delete it")
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
            raise TinyLMError(f"cloud state {path} is not valid JSON ({one_line(exc)}); fix or delete it") from None
        except OSError as exc:  # a directory, a dangling link, no permission, or .tinylm itself a file
            raise TinyLMError(f"cannot read the cloud state {path} ({exc.strerror or exc}); "
                              "make it a readable file or delete it") from None
        if not isinstance(data, dict):
            raise TinyLMError(f"cloud state {path} must be a JSON object; fix or delete it")
        target, job = data.get("target") or {}, data.get("job") or {}
        check_state(path, target, job)
        return cls(state_dir, dict(target), dict(job))

    def save(self) -> None:
        text = json.dumps({"target": self.target, "job": self.job}, indent=2)
        try:
            atomic_write_text(self.path, text + "\n")
        except OSError as exc:
            raise TinyLMError(f"cannot write the cloud state {self.path} ({exc.strerror or exc}); "
                              f"make {self.state_dir} a writable directory") from None


def check_local_out(value: str) -> PurePath:
    """Where a run is fetched to: a relative path inside this project (runs/NAME), never '..' or absolute."""
    path = PurePath(value)
    if not path.parts or path.is_absolute() or ".." in path.parts or _CONTROL.search(value):
        raise TinyLMError(f"the local run directory must be a relative path inside this project, like runs/NAME "
                          f"(no '..', no control characters), got {one_line(repr(value), 120)}")
    return path


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
    if "pod_id" in target and not valid_pod_id(target["pod_id"]):
        raise bad("pod_id", one_line(repr(target["pod_id"]), 80))
    if "host" in target:
        _checked(bad, "address", check_address, target.get("user"), target["host"], target.get("port"))
    if job and "name" not in job:
        raise bad("job name", "missing: a run without a name cannot be found again")
    for key, check in (("name", check_name), ("local_out", check_local_out)):
        if key in job:
            _checked(bad, f"job {key}", check, job[key])


def _checked(bad: Callable[[str, str], TinyLMError], what: str, check: Callable, *args: Any) -> None:
    try:
        check(*args)
    except TinyLMError as exc:
        raise bad(what, str(exc)) from None
