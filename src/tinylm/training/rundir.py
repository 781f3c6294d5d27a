"""The run directory: the one owner of every file a run writes and reads.

    run = RunDir("runs/a1")
    run.start(cfg, tokenizer)              # refuses a directory that already holds a run
    run.save(state, metrics)               # ckpt.pt, then metrics.jsonl: each atomic
    model, tokenizer, cfg, ckpt = load_run("runs/a1")

Files: ``config.json`` (the config as of the last start or resume) and ``tokenizer.json``, for people;
``ckpt.pt`` (everything to continue bit-for-bit; read with ``weights_only=True``, so it cannot run code) and
``metrics.jsonl`` (one evaluation a line). Every write goes through a temp file and a rename:
killing the process at any moment leaves the previous file or the new one, whole.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tinylm.atomic import atomic_write, atomic_write_text, hold_interrupts
from tinylm.config import RunConfig
from tinylm.data import Tokenizer, tokenizer_from_dict
from tinylm.errors import CheckpointError, TinyLMError
from tinylm.jsonfile import read_json
from tinylm.model import build_model
from tinylm.training.ckpt_checks import check_checkpoint, check_tokenizer, check_weight_shapes, clean_state_dict
from tinylm.training.diskfull import disk_full_message, is_disk_full
from tinylm.training.evaluations import is_evaluation, parse_line

CHECKPOINT_NAME = "ckpt.pt"
SAFETENSORS_NAME = "model.safetensors"  # weights only, as ``tinylm export --format safetensors`` writes them
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.json"
REPORT_NAME, CURVE_NAME = "report.md", "loss.png"  # the run card and its loss curve (tinylm.report writes them)
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME, TOKENIZER_NAME, REPORT_NAME, CURVE_NAME)


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
        """A new run goes only into a new or empty directory, or one a run killed before its first save left.

        Anything else (an export, a user's files) would be written over or mixed in.
        """
        if self.checkpoint.exists() or self.checkpoint.is_symlink():
            raise TinyLMError(f"{self.path} already holds a run; continue it with --resume or choose another --out")
        if self.path.exists() and not self.path.is_dir():
            raise TinyLMError(f"--out {self.path} is a file, not a directory; choose another --out")
        try:
            names = [p.name for p in self.path.iterdir()] if self.path.is_dir() else []
        except OSError as exc:
            raise TinyLMError(f"cannot list {self.path} ({exc.strerror}); choose another --out") from None
        others = sorted(name for name in names if not _left_by_start(name))
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise TinyLMError(f"{self.path} is not empty ({shown}) and holds no run to continue; choose another "
                              "--out (a new or empty directory), or --resume a run")

    def start(self, cfg: RunConfig, tokenizer: Tokenizer) -> None:
        """Create a new run: config.json and tokenizer.json, for people to read."""
        self.refuse_existing()
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temps()
        self.write_config(cfg)
        tokenizer.save(self.path / TOKENIZER_NAME)

    def check_writable(self) -> None:
        """Before a resume trains: each file the run replaces can be replaced. A directory in a file's place
        would fail the first save (or the run card, after the last one) instead of now."""
        for name in RUN_FILES:
            path = self.path / name
            if path.is_dir() and not path.is_symlink():  # renaming over a symlink replaces only the link
                raise TinyLMError(f"{path} is a directory where the run keeps its {name}; move it out of the run "
                                  "directory, then resume again")

    def write_config(self, cfg: RunConfig) -> None:
        """config.json; a resume writes it again, so ``--set max_iters=...`` shows there and in ``tinylm runs``."""
        atomic_write_text(self.path / CONFIG_NAME, json.dumps(cfg.to_dict(), indent=2))

    def save(self, state: dict[str, Any], metrics: list[dict]) -> None:
        """Checkpoint, then the metrics file; both atomic, so an interruption loses nothing whole.

        A Ctrl-C is held across both writes, not just each one: raised between them, it would leave
        metrics.jsonl one evaluation behind ckpt.pt.
        """
        try:
            with hold_interrupts():
                save_checkpoint(self.checkpoint, state)
                atomic_write_text(self.metrics, "".join(json.dumps(m) + "\n" for m in metrics))
        except (OSError, RuntimeError) as exc:
            if not is_disk_full(exc):
                raise
            raise CheckpointError(disk_full_message(self.path, state)) from None

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

        Lines that are not evaluations (not whole UTF-8 JSON objects after a truncated write, or with
        a field of the wrong type after an edit: see ``is_evaluation``) are skipped, and ``warn``
        (default: stderr) is told which.
        """
        if self.metrics.is_file():
            lines = [(n, parse_line(raw)) for n, raw in enumerate(self.metrics.read_bytes().split(b"\n"), 1)
                     if raw.strip()]
        else:
            saved = self.load_checkpoint().get("metrics", [])
            lines = list(enumerate(saved if isinstance(saved, list) else [], 1))
        bad = [number for number, record in lines if not is_evaluation(record)]
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            where = self.metrics if self.metrics.is_file() else f"the metrics in {self.checkpoint}"
            (warn or _stderr)(f"tinylm: warning: skipped {len(bad)} unreadable line(s) of {where} (line {shown}): "
                              "not evaluations as tinylm writes them, perhaps a truncated write or an edit")
        return [record for _, record in lines if is_evaluation(record)]


def _left_by_start(name: str) -> bool:
    """What ``RunDir.start`` writes before the first checkpoint: config.json, tokenizer.json, their temp files."""
    return name in (CONFIG_NAME, TOKENIZER_NAME) or any(
        name.startswith(f".{kept}.") and name.endswith(".tmp") for kept in (CONFIG_NAME, TOKENIZER_NAME))


def checkpoint_path(run_dir: str | Path) -> Path:
    return RunDir(run_dir).require_checkpoint()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(payload, f))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


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

    cfg, tokenizer = _export_config_and_tokenizer(path)
    try:
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


def _export_config_and_tokenizer(path: Path) -> tuple[RunConfig, Tokenizer]:
    """config.json and tokenizer.json of an export, with the checks a checkpoint's copies get."""
    fix = "export the run again"
    try:
        cfg = RunConfig.from_dict(read_json(path / CONFIG_NAME, fix, CheckpointError))
    except CheckpointError:
        raise
    except TinyLMError as exc:
        raise CheckpointError(f"{path / CONFIG_NAME} is not a valid config ({exc}); {fix}") from None
    data = read_json(path / TOKENIZER_NAME, fix, CheckpointError)
    check_tokenizer(data, path / TOKENIZER_NAME, fix)
    try:
        return cfg, tokenizer_from_dict(data)
    except TinyLMError as exc:
        raise CheckpointError(f"{path / TOKENIZER_NAME} is not a tokenizer tinylm can read ({exc}); {fix}") from None
