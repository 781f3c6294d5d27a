"""The project's cloud state, ``.tinylm/cloud.json`` (git-ignored): which pod or host, and the last job.

    state = CloudState.load(Path(".tinylm"))
    state.target            # {"provider": "runpod", "pod_id": "...", "user": "root", "host": ..., "port": ...}
    state.job               # {"name": ..., "remote_dir": ..., "python": ..., "local_out": ...}
    state.save()

Never holds the API key: only ids, addresses and paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinylm.atomic import atomic_write_text
from tinylm.errors import TinyLMError

STATE_NAME = "cloud.json"


@dataclass
class CloudState:
    state_dir: Path
    target: dict[str, Any] = field(default_factory=dict)  # empty: nothing up
    job: dict[str, Any] = field(default_factory=dict)  # the last `cloud train`, for --attach and logs

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_NAME

    @classmethod
    def load(cls, state_dir: Path) -> "CloudState":
        path = state_dir / STATE_NAME
        if not path.is_file():
            return cls(state_dir)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TinyLMError(f"cloud state {path} is not valid JSON ({exc}); fix or delete it") from None
        return cls(state_dir, dict(data.get("target") or {}), dict(data.get("job") or {}))

    def save(self) -> None:
        text = json.dumps({"target": self.target, "job": self.job}, indent=2)
        atomic_write_text(self.path, text + "\n")
