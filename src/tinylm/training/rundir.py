"""The run directory: the one owner of every file a run writes and reads.

    run = RunDir("runs/a1")
    run.start(cfg, tokenizer)              # refuses a directory that already holds a run
    run.save(state, metrics)               # ckpt.pt, then metrics.jsonl: each atomic
    model, tokenizer, cfg, ckpt = load_run("runs/a1")

Files: ``config.json`` and ``tokenizer.json`` (written once, for people), ``ckpt.pt`` (everything
to continue bit-for-bit; read with ``weights_only=True``, so it cannot run code) and
``metrics.jsonl`` (one evaluation a line). Every write goes through a temp file and a rename:
killing the process at any moment leaves the previous file or the new one, whole.
"""

from __future__ import annotations

import errno
import json
import pickle
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tinylm.atomic import atomic_write, atomic_write_text
from tinylm.config import RunConfig
from tinylm.data import Tokenizer, load_tokenizer, tokenizer_from_dict
from tinylm.errors import CheckpointError, TinyLMError
from tinylm.model import build_model
from tinylm.training.ckpt_checks import check_checkpoint, check_weight_shapes, clean_state_dict

CHECKPOINT_NAME = "ckpt.pt"
SAFETENSORS_NAME = "model.safetensors"  # weights only, as ``tinylm export --format safetensors`` writes them
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.json"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_NAME

    def refuse_existing(self) -> None:
        if self.checkpoint.exists():
            raise TinyLMError(f"{self.path} already holds a run; continue it with --resume or choose another --out")

    def start(self, cfg: RunConfig, tokenizer: Tokenizer) -> None:
        """Create a new run: config.json and tokenizer.json, for people to read."""
        self.refuse_existing()
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temps()
        atomic_write_text(self.path / CONFIG_NAME, json.dumps(cfg.to_dict(), indent=2))
        tokenizer.save(self.path / TOKENIZER_NAME)

    def save(self, state: dict[str, Any], metrics: list[dict]) -> None:
        """Checkpoint, then the metrics file; both atomic, so an interruption loses nothing whole."""
        try:
            save_checkpoint(self.checkpoint, state)
            atomic_write_text(self.metrics, "".join(json.dumps(m) + "\n" for m in metrics))
        except (OSError, RuntimeError) as exc:
            if not _is_disk_full(exc):
                raise
            raise CheckpointError(_disk_full_message(self.path, state)) from None

    def remove_stale_temps(self) -> list[Path]:
        """Delete temp files that a kill during a write left behind (call only as the run's one writer).

        A reader must not do this: the temp file may be a live write of the training process.
        """
        stale = [p for name in (CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME, TOKENIZER_NAME)
                 for p in self.path.glob(f".{name}.*.tmp") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def require_checkpoint(self) -> Path:
        if not self.path.is_dir():
            raise CheckpointError(f"run directory not found: {self.path}; "
                                  f"train one with `tinylm train --preset PRESET --out {self.path}`")
        if not self.checkpoint.is_file():
            raise CheckpointError(f"no checkpoint in {self.path} (expected {self.checkpoint}); "
                                  "is this a tinylm run directory?")
        return self.checkpoint

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.require_checkpoint(), map_location)

    def read_metrics(self, warn: Callable[[str], None] | None = None) -> list[dict]:
        """The evaluations of the run: ``metrics.jsonl`` if present, else the checkpoint's copy.

        Lines that are not whole UTF-8 JSON objects (a truncated write, a disk error) are skipped,
        and ``warn`` (default: stderr) is told which.
        """
        if not self.metrics.is_file():
            return list(self.load_checkpoint().get("metrics", []))
        records, bad = [], []
        for number, raw in enumerate(self.metrics.read_bytes().split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                bad.append(number)
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            (warn or _stderr)(f"tinylm: warning: skipped {len(bad)} unreadable line(s) of {self.metrics} "
                              f"(line {shown}): not UTF-8 JSON objects, perhaps a truncated write")
        return records


def checkpoint_path(run_dir: str | Path) -> Path:
    return RunDir(run_dir).require_checkpoint()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(payload, f))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


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


def _is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC, also when torch's zip writer re-raised it as a RuntimeError (the OSError is its context)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _disk_full_message(run_dir: Path, state: dict[str, Any]) -> str:
    need_mb = (payload_bytes(state) * 1.05 + 64_000) / 1e6  # + the zip's per-tensor records and metrics.jsonl
    free_mb = shutil.disk_usage(run_dir).free / 1e6
    return (f"disk full while writing the checkpoint in {run_dir}: it needs about {need_mb:.1f} MB free, "
            f"{free_mb:.1f} MB are; the previous checkpoint is intact. Free some space, then continue with --resume")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read ``path`` without unpickling code, then check it (``ckpt_checks``) before anything is built."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_refused_message(path, exc)) from None
    except Exception as exc:  # truncated zip, garbage bytes
        raise CheckpointError(f"checkpoint {path} is damaged or truncated ({type(exc).__name__}); "
                              "retrain or restore it from a copy") from None
    check_checkpoint(ckpt, path)
    return ckpt


def _refused_message(path: str | Path, exc: Exception) -> str:
    """weights_only names the global it refused ("GLOBAL posix.system"); anything else is plain damage."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if refused is None:
        return f"checkpoint {path} is damaged or truncated (UnpicklingError); retrain or restore it from a copy"
    return (f"checkpoint {path} holds Python objects that tinylm will not unpickle ({refused.group(1)}; "
            "unpickling them could run code); only load checkpoints written by tinylm, or retrain")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under torch.compile and DDP wrappers."""
    while hasattr(model, "_orig_mod") or hasattr(model, "module"):
        model = getattr(model, "_orig_mod", None) or model.module
    return model


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, tokenizer, RunConfig, raw checkpoint) from a run directory.

    A directory with ``model.safetensors`` and no ``ckpt.pt`` (an export) loads too; its "checkpoint"
    then holds the config, tokenizer and step, and no optimizer or metrics.
    """
    path = Path(run_dir)
    if not (path / CHECKPOINT_NAME).exists() and (path / SAFETENSORS_NAME).is_file():
        return load_safetensors_run(path, device)
    ckpt = RunDir(run_dir).load_checkpoint(map_location=device)
    cfg = RunConfig.from_dict(ckpt["config"])
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])  # char, byte or BPE; old char checkpoints too
    model = build_model(cfg.model, tokenizer.vocab_size)
    model.load_state_dict(clean_state_dict(ckpt["model"]))  # shapes already checked by load_checkpoint
    return model.to(device).eval(), tokenizer, cfg, ckpt


def load_safetensors_run(path: Path, device: str | torch.device = "cpu"):
    """load_run for an exported directory: model.safetensors + config.json + tokenizer.json."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    try:
        cfg = RunConfig.from_dict(json.loads((path / CONFIG_NAME).read_text(encoding="utf-8")))
        tokenizer = load_tokenizer(path / TOKENIZER_NAME)
        with safe_open(path / SAFETENSORS_NAME, framework="pt") as f:
            step = int((f.metadata() or {}).get("step", -1))
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
        if cfg.model.tie_weights:  # safetensors stores a shared tensor once, under either name
            for name, twin in (("head.weight", "token_embedding.weight"), ("token_embedding.weight", "head.weight")):
                if name not in shapes and twin in shapes:
                    shapes[name] = shapes[twin]
        # the header's shapes must be what config.json builds, before anything is allocated
        check_weight_shapes(cfg, tokenizer.vocab_size, shapes, path / SAFETENSORS_NAME)
        model = build_model(cfg.model, tokenizer.vocab_size)
        load_model(model, path / SAFETENSORS_NAME, strict=True)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{path} holds model.safetensors but cannot be loaded ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); export it again") from None
    ckpt = {"config": cfg.to_dict(), "tokenizer": tokenizer.to_dict(), "step": step, "metrics": []}
    return model.to(device).eval(), tokenizer, cfg, ckpt
