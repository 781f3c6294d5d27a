"""``tinylm cloud export-sky``: the same run as a SkyPilot task, for users who launch with SkyPilot.

    write_sky_task(cfg, "a1", Path("sky-a1.yaml"), accelerators="A100:1")
    # then: sky launch -c tinylm sky-a1.yaml

The config travels as a file (``file_mounts``), like ``tinylm cloud train``; so does a ``--data`` file.
Strings are written as JSON, which YAML reads as double-quoted scalars.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tinylm.atomic import atomic_write_text
from tinylm.cloud.target import project_root
from tinylm.config import RunConfig
from tinylm.errors import DataError

REMOTE_FILES = "/tmp/tinylm-files"


def sky_task_yaml(cfg: RunConfig, name: str, config_file: Path, accelerators: str) -> str:
    """YAML text of a SkyPilot task that trains ``cfg`` as ``runs/NAME`` in the synced project."""
    mounts = {f"{REMOTE_FILES}/{name}.json": str(config_file.resolve())}
    if cfg.train.data:
        data = Path(cfg.train.data).expanduser()
        if not data.is_file():
            raise DataError(f"data file not found: {data}")
        mounts[f"{REMOTE_FILES}/data/{data.name}"] = str(data.resolve())
    train = shlex.join(["python", "-m", "tinylm", "train", "--config", f"{REMOTE_FILES}/{name}.json",
                        "--out", f"runs/{name}", "--quiet"])
    lines = [
        f"# SkyPilot task for tinylm run {name}: sky launch -c tinylm {name}.yaml",
        f"# fetch the run afterwards: rsync -a tinylm:sky_workdir/runs/{name}/ runs/{name}/",
        f"name: {json.dumps(name)}",
        "resources:",
        f"  accelerators: {json.dumps(accelerators)}",
        f"workdir: {json.dumps(str(project_root()))}",
        "file_mounts:",
        *[f"  {json.dumps(remote)}: {json.dumps(local)}" for remote, local in mounts.items()],
        "setup: |",
        "  python -m pip install --quiet -e .",
        "run: |",
        f"  {train}",
    ]
    return "\n".join(lines) + "\n"


def write_sky_task(cfg: RunConfig, name: str, out: Path, accelerators: str) -> Path:
    """Write ``out`` (the task) and ``out``'s sibling ``NAME.config.json`` (the config it mounts)."""
    config_file = out.with_name(f"{name}.config.json")
    text = sky_task_yaml(cfg, name, config_file, accelerators)
    if cfg.train.data:  # the mounted copy's path on the cluster
        cfg.train.data = f"{REMOTE_FILES}/data/{Path(cfg.train.data).name}"
    atomic_write_text(config_file, json.dumps(cfg.to_dict(), indent=2))
    atomic_write_text(out, text)
    return config_file
