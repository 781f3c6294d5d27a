"""The run card: ``report.md`` in a run directory, Markdown a person can paste into an issue.

    write_report("runs/a1")                         # what `tinylm report --run runs/a1` does
    write_report("runs/a1", preset="attention-1", exact_val=1.61)   # end of `tinylm train`

What was trained (the preset, and each config key that differs from it), on what (tinylm's git
commit, torch, the device, CPU/GPU counts), how long (wall time from the first to the last
evaluation, tokens, tokens/s), how well (the last evaluation's train/val loss and perplexity, the
exact val loss over the whole split), the loss curve (``loss.png``, when matplotlib is installed) and
two samples from the empty context. Without a preset given, the card names the closest one: the
preset (or the bare defaults) from which the config differs in the fewest keys.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from tinylm.atomic import atomic_write, atomic_write_text
from tinylm.config import RunConfig, load_config
from tinylm.device import resolve_device
from tinylm.errors import TinyLMError
from tinylm.evaluate import exact_loss, scored_part
from tinylm.jsonfile import read_json
from tinylm.presets import PRESETS
from tinylm.sampling import SamplingOptions, sample_texts
from tinylm.training.evaluations import wall_seconds
from tinylm.training.rundir import CURVE_NAME, REPORT_NAME, RunDir, load_run

SAMPLE_CHARS = 200
CARD_CHARS = 1_000_000


def config_diff(cfg: RunConfig, preset: str | None) -> list[tuple[str, object, object]]:
    """(key, preset's value, run's value) for every key where the run differs from the preset."""
    base = load_config(preset).to_dict()
    run = cfg.to_dict()
    return [(key, base[section][key], value) for section in run for key, value in run[section].items()
            if base[section][key] != value]


def closest_preset(cfg: RunConfig) -> str | None:
    """The preset (None: the defaults) whose config differs from ``cfg`` in the fewest keys."""
    return min([None, *PRESETS], key=lambda name: len(config_diff(cfg, name)))


def git_commit() -> str:
    """tinylm's commit (``+dirty`` with local changes), or why there is none; never raises."""
    here = str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def device_line(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    return f"{platform.processor() or platform.machine()} ({device.type})"


def timing(metrics: list[dict], tokens_per_step: int) -> dict[str, float]:
    """Wall time between the first and the last evaluation and the tokens trained in it."""
    first, last = metrics[0], metrics[-1]
    wall = wall_seconds(first, last)
    wall = float("nan") if wall is None else wall
    tokens = (last["step"] - first["step"]) * tokens_per_step
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall if wall > 0 else float("nan")}


def _number(value: float | None, digits: int) -> str:
    """``value`` to ``digits`` decimals; "-" for a value an edited metrics line lacked (None or NaN)."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _table(rows: list[tuple[str, object]]) -> list[str]:
    return ["| | |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows]]


def _curve(run_dir: Path) -> str | None:
    """loss.png beside report.md, or None without matplotlib."""
    try:
        from tinylm.inspect import plots
        fig = plots.plot_runs([run_dir])
    except TinyLMError:  # matplotlib missing (plots says so), or no evaluations
        return None
    atomic_write(run_dir / CURVE_NAME, lambda f: f.write(plots.png_bytes(fig)))
    return CURVE_NAME


def _what(cfg: RunConfig, preset: str | None) -> list[str]:
    name = preset or "none (defaults)"
    lines = ["## What was trained", "", f"Preset: `{name}`; config keys that differ from it:", ""]
    return lines + ([f"- `{key}`: {old!r} -> {new!r}" for key, old, new in config_diff(cfg, preset)] or ["- none"])


def _on_what(device: torch.device, world: int) -> list[str]:
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["## On what", "", *_table([
        ("tinylm commit", git_commit()), ("torch", torch.__version__), ("device", device_line(device)),
        ("CPUs", os.cpu_count()), ("GPUs", gpus), ("processes (DDP ranks)", world)])]


def _how_long(metrics: list[dict], step: int, tokens_per_step: int) -> list[str]:
    when = timing(metrics, tokens_per_step)
    return ["## How long", "", *_table([
        ("steps", step), ("tokens seen", step * tokens_per_step),
        ("wall time, first to last evaluation (s)", _number(when["wall_s"], 1)),  # pauses before resumes left out
        ("tokens/s (evaluations included)", _number(when["tokens_per_s"], 0))])]


def _how_well(last: dict, exact_val: float, curve: str | None) -> list[str]:
    lines = ["## How well", "", *_table([
        ("last evaluation at step", last["step"]), ("train loss (estimate)", _number(last.get("train_loss"), 4)),
        ("train perplexity", _number(last.get("train_perplexity"), 4)),
        ("val loss (estimate)", _number(last.get("val_loss"), 4)),
        ("val perplexity", _number(last.get("val_perplexity"), 4)),
        ("exact val loss (whole split)", f"{exact_val:.4f}"),
        ("exact val perplexity", f"{math.exp(exact_val):.4f}")])]
    return lines + (["", f"![loss curve]({curve})"] if curve else [])


def report_markdown(name: str, cfg: RunConfig, ckpt: dict, metrics: list[dict], preset: str | None,
                    exact_val: float, samples: list[str], device: torch.device, curve: str | None) -> str:
    """The card's text; every number comes from the run directory (metrics.jsonl, the checkpoint)."""
    if not metrics:
        raise TinyLMError(f"run {name} has no evaluations yet; train it for at least one eval_interval")
    world = len(ckpt.get("rng", {}).get("ranks", [])) or 1
    tokens_per_step = cfg.train.batch_size * cfg.model.block_size * cfg.train.grad_accum_steps * world
    lines = [f"# Run card: {name}", "", *_what(cfg, preset), "", *_on_what(device, world), "",
             *_how_long(metrics, ckpt.get("step", 0), tokens_per_step), "", *_how_well(metrics[-1], exact_val, curve),
             "", "## Samples (empty context)", ""]
    for i, text in enumerate(samples, 1):
        fence = "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))  # longer than any run inside
        lines += [f"Sample {i}:", "", fence + "text", text, fence, ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path, preset: str | None = None, exact_val: float | None = None,
                 sample_chars: int = SAMPLE_CHARS, device: str = "auto", seed: int = 1337) -> Path:
    """Write ``report.md`` (and ``loss.png``) into the run directory; returns the report's path."""
    from tinylm.training.run import prepare_corpus

    run_dir = Path(run_dir)
    where = resolve_device(device)
    model, tokenizer, cfg, ckpt = load_run(run_dir, where)
    preset = preset if preset is not None else closest_preset(cfg)
    if exact_val is None:
        exact_val = exact_loss(model, scored_part(prepare_corpus(cfg, tokenizer).val_data)[0], dtype=cfg.train.dtype)
    generator = torch.Generator(device=where).manual_seed(seed)
    samples = sample_texts(model, tokenizer, "", SamplingOptions(max_new_tokens=sample_chars), 2,
                           generator=generator) if sample_chars else []
    text = report_markdown(run_dir.name, cfg, ckpt, RunDir(run_dir).read_metrics(), preset, exact_val, samples,
                           where, _curve(run_dir))
    atomic_write_text(run_dir / REPORT_NAME, text)
    return run_dir / REPORT_NAME


def card_value(run_dir: Path, label: str) -> str | None:
    """The value of row ``label`` in the run's report.md table, or None (no card, no such row)."""
    path = Path(run_dir) / REPORT_NAME
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", errors="replace") as f:
        text = f.read(CARD_CHARS)  # the card is a few KB; a huge file in its place must not fill memory
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    return None


def run_summary(run_dir: Path) -> dict | None:
    """One row of ``tinylm runs``, from config.json, metrics.jsonl and report.md (no weights are read).

    None for a directory that is not a run this tinylm can read (one bad run must not end the listing).
    """
    try:
        metrics = RunDir(run_dir).read_metrics() if (run_dir / "metrics.jsonl").is_file() else []
        cfg = RunConfig.from_dict(read_json(run_dir / "config.json", "it is skipped"))
        exact = card_value(run_dir, "exact val loss (whole split)") or "-"
    except (OSError, ValueError, TinyLMError):
        return None
    if not metrics:
        return None
    first, last = metrics[0], metrics[-1]
    wall = wall_seconds(first, last)
    return {"name": run_dir.name, "preset": closest_preset(cfg) or "-", "step": last["step"],
            "val_loss": last.get("val_loss"), "exact_val": exact, "wall_s": wall, "time": last.get("time")}


def list_runs(root: str | Path, sort: str = "date") -> list[dict]:
    """The runs directly under ``root``, newest first (``sort="val"``: lowest val loss first).

    A row may lack ``val_loss``, ``wall_s`` and ``time`` (None): such rows sort last.
    """
    root = Path(root)
    if not root.is_dir():
        raise TinyLMError(f"no runs directory at {root}; train one with `tinylm train` or pass another DIR")
    rows = [row for child in sorted(root.iterdir()) if child.is_dir() and (row := run_summary(child))]
    if sort == "val":
        return sorted(rows, key=lambda row: (row["val_loss"] is None, row["val_loss"] or 0.0))
    return sorted(rows, key=lambda row: (row["time"] is not None, row["time"] or 0.0), reverse=True)
