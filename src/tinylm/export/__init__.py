"""Export a run into the formats other tools read: Hugging Face ``transformers``, safetensors, ONNX.

    from tinylm.export import export_run
    export_run("runs/a1", "hf", "exports/a1-hf")            # AutoModelForCausalLM.from_pretrained(...)
    export_run("runs/a1", "safetensors", "exports/a1-st")   # tinylm sample --run exports/a1-st
    export_run("runs/a1", "onnx", "exports/a1-onnx", force=True)

Each format checks first that it can express the model exactly (``hf`` refuses qk_norm, the bigram
model and byte or BPE tokenizers, naming the option), then writes into a temp directory beside
``out`` and renames it into place at the end: a failed export leaves no directory behind. The
weights written are those of ``load_run``, the ones ``tinylm eval`` scores, in fp32.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tinylm.errors import TinyLMError
from tinylm.training.rundir import load_run

FORMATS = {"hf": "tinylm.export.hf", "safetensors": "tinylm.export.safetensors_dir",
           "onnx": "tinylm.export.onnx_file"}


def export_run(run_dir: str | Path, fmt: str, out: str | Path, force: bool = False) -> Path:
    """Write the run in ``run_dir`` as ``fmt`` into the directory ``out``; returns ``out``."""
    if fmt not in FORMATS:
        raise TinyLMError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    check_out(Path(run_dir), out, force)
    writer = importlib.import_module(FORMATS[fmt])
    model, tokenizer, cfg, ckpt = load_run(run_dir, "cpu")
    writer.check(cfg, tokenizer)  # refuse before anything is written
    with staging_dir(out) as tmp:
        writer.write(model.float(), tokenizer, cfg, ckpt, tmp)
    return out


def check_out(run_dir: Path, out: Path, force: bool) -> None:
    """Refuse an existing ``out`` without ``force``, and (even with it) one that is or holds the run or the
    current directory; refuse an ``out`` whose parent cannot be a directory."""
    if out.name in ("", ".", ".."):
        raise TinyLMError(f"--out {out} does not name a new directory; give one, e.g. --out exports/a1")
    parent = next((p for p in (out.parent, *out.parent.parents) if p.exists() or p.is_symlink()), None)
    if parent is not None and not parent.is_dir():
        raise TinyLMError(f"--out {out} cannot be made: {parent} is a file, not a directory; choose another --out")
    if out.exists() or out.is_symlink():
        if not force:
            raise TinyLMError(f"{out} already exists; pass --force to replace it, or choose another --out")
        if not out.is_dir() or out.is_symlink():
            raise TinyLMError(f"{out} exists and is not a directory; remove it or choose another --out")
        here = out.resolve()
        for kept, what in ((run_dir.resolve(), "the run being exported"), (Path.cwd(), "the current directory")):
            if here == kept or here in kept.parents:
                raise TinyLMError(f"--out {out} is (or holds) {what}; --force would replace it, choose another --out")


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A temp directory beside ``out``; renamed to ``out`` (replacing it) when the block ends cleanly."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as exc:
        raise TinyLMError(f"cannot write into {out.parent} ({exc.strerror}); choose another --out") from None
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes 0700; an export is meant to be shared
        if out.exists():
            _replace(out, tmp)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _replace(out: Path, tmp: Path) -> None:
    """Swap ``tmp`` in for ``out``; if either rename fails, ``out`` is put back and no ``.old`` is left."""
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    try:
        out.rename(old / "previous")
        try:
            tmp.rename(out)
        except OSError:
            (old / "previous").rename(out)
            raise
    except OSError as exc:
        raise TinyLMError(f"cannot replace {out} ({exc.strerror}); it is unchanged, choose another --out") from None
    finally:
        shutil.rmtree(old)


__all__ = ["FORMATS", "export_run"]
