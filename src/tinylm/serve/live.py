"""Watch a run that is still training: the newest checkpoint and the metrics lines as they arrive.

    live = LiveModel("runs/a1", torch.device("cpu"))
    state = live.current()               # reloads ckpt.pt first if it changed since the last look
    state.model, state.tokenizer, state.step
    tail = MetricsTail(Path("runs/a1/metrics.jsonl"))
    tail.poll()                          # [("reset", {}), ("metric", {...}), ...]: what is new since

The trainer replaces ``ckpt.pt`` and ``metrics.jsonl`` by rename (``tinylm.atomic``), so a file opened
after a change is whole. Still, a run directory is outside input: a checkpoint that fails to load
leaves the previous model in place (the error is reported), and a metrics line that is not complete
(no newline yet) or not a JSON object is skipped.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tinylm.data import CharTokenizer
from tinylm.jsonfile import read_regular_file
from tinylm.sampling import SamplingOptions, sample_texts
from tinylm.training.rundir import RunDir, load_run

MAX_METRICS_BYTES = 16 * 2**20  # one line per evaluation: far more than any real run writes
MAX_TEXT_CHARS = 2000  # a sample string in a metrics line is cut to this
SAMPLE_CHARS = 200  # the sample shown for each new checkpoint


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns), or None for a missing file: a rename or an append changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: CharTokenizer
    step: int
    signature: tuple[int, int, int] | None
    version: int  # 1 for the model loaded at start, +1 for each reload
    sample: str | None = field(default=None, repr=False)


class LiveModel:
    """The run's model, replaced by the newest ``ckpt.pt`` whenever that file changes."""

    def __init__(self, run_dir: str | Path, device: torch.device):
        self.run, self.device = RunDir(run_dir), device
        self._lock = threading.Lock()
        self._failed: tuple[int, int, int] | None = None  # the signature of a file that did not load
        self.error: str | None = None
        signature = file_signature(self.run.checkpoint)
        model, tokenizer, _, ckpt = load_run(self.run.path, device)
        self.state = Loaded(model, tokenizer, int(ckpt.get("step", 0)), signature, 1)

    def current(self) -> Loaded:
        signature = file_signature(self.run.checkpoint)
        if signature is not None and signature not in (self.state.signature, self._failed):
            with self._lock:  # one thread loads; the others then see the new state
                if signature not in (self.state.signature, self._failed):
                    self._reload(signature)
        return self.state

    def _reload(self, signature: tuple[int, int, int]) -> None:
        try:
            model, tokenizer, _, ckpt = load_run(self.run.path, self.device)
        except Exception as exc:  # damaged file, wrong shapes, a different kind of file: keep serving the old one
            self._failed, self.error = signature, f"{type(exc).__name__}: {exc}".splitlines()[0]
            return
        self.error = None
        self.state = Loaded(model, tokenizer, int(ckpt.get("step", 0)), signature, self.state.version + 1)

    def describe(self) -> dict[str, Any]:
        """The ``checkpoint`` event: which model the inspector shows, and a short sample from it."""
        state = self.current()
        if state.sample is None:  # once per checkpoint; seeded, so two viewers see the same text
            generator = torch.Generator(device=self.device).manual_seed(0)
            options = SamplingOptions(SAMPLE_CHARS, temperature=0.8)
            state.sample = sample_texts(state.model, state.tokenizer, "", options, 1, None, generator)[0]
        return {"step": state.step, "version": state.version, "sample": state.sample, "error": self.error}


def clean_metric(line: str) -> dict[str, Any] | None:
    """A metrics line as a JSON-safe dict (NaN and infinities become null), or None if it is not one."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: a line of 100,000 nested brackets
        return None
    if not isinstance(data, dict):
        return None
    out = {}
    for key, value in data.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, str):
            value = value[:MAX_TEXT_CHARS]
        elif isinstance(value, list):  # e.g. a list of sample texts
            value = [v[:MAX_TEXT_CHARS] for v in value[:8] if isinstance(v, str)]
        elif not isinstance(value, (int, float, bool)) and value is not None:
            continue
        out[str(key)[:100]] = value
    return out


class MetricsTail:
    """New lines of ``metrics.jsonl`` since the last poll; a rewrite that changes old lines resets."""

    def __init__(self, path: Path):
        self.path = path
        self.signature: tuple[int, int, int] | None = None
        self.sent: list[str] = []  # the complete lines already turned into events

    def poll(self) -> list[tuple[str, dict]]:
        signature = file_signature(self.path)
        if signature == self.signature:
            return []
        self.signature = signature
        lines = self._complete_lines()
        events: list[tuple[str, dict]] = []
        if lines[:len(self.sent)] != self.sent:  # a new run, or the file was cut: start over
            events.append(("reset", {}))
            self.sent = []
        for line in lines[len(self.sent):]:
            metric = clean_metric(line) if line.strip() else None
            if metric is not None:
                events.append(("metric", metric))
        self.sent = lines
        return events

    def _complete_lines(self) -> list[str]:
        """Every line that ends in a newline; a last line still being written waits for the next poll."""
        try:
            data = read_regular_file(self.path, MAX_METRICS_BYTES + 1)
        except OSError:
            return []
        if data is None:  # a FIFO or device in its place is not read
            return []
        if len(data) > MAX_METRICS_BYTES:
            data = data[:MAX_METRICS_BYTES]
        text = data.decode("utf-8", errors="replace")
        return text.split("\n")[:-1]
