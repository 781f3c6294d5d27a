"""Disk full while saving a checkpoint: recognise it, and say how much space the save needs.

    try:
        save_checkpoint(path, state)
    except (OSError, RuntimeError) as exc:
        if is_disk_full(exc):
            raise CheckpointError(disk_full_message(run_dir, state)) from None
        raise
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch


def payload_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the tensor storages in a nested dict/list payload (each storage once, as torch.save does)."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v, seen) for v in obj)
    return 0


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC, also when torch's zip writer re-raised it as a RuntimeError (the OSError is its context)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_message(run_dir: Path, state: dict[str, Any]) -> str:
    need_mb = (payload_bytes(state) * 1.05 + 64_000) / 1e6  # + the zip's per-tensor records and metrics.jsonl
    free_mb = shutil.disk_usage(run_dir).free / 1e6
    return (f"disk full while writing the checkpoint in {run_dir}: it needs about {need_mb:.1f} MB free, "
            f"{free_mb:.1f} MB are; the previous checkpoint is intact. Free some space, then continue with --resume")
