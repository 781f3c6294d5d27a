"""One line of a run's metrics.jsonl: an evaluation, with its fields checked; training time from them.

    records = [parse_line(raw) for raw in metrics_bytes.split(b"\n") if raw.strip()]
    good = [r for r in records if is_evaluation(r)]          # None and malformed lines drop out
    wall_seconds(good[0], good[-1])                          # pauses before resumes left out

A run directory is outside input: a line may be cut short by a kill, or edited by hand.
"""

from __future__ import annotations

import json
import math
from typing import Any

# What each known field of an evaluation must be; other fields pass unchecked.
_NUMBER_FIELDS = ("train_loss", "val_loss", "train_perplexity", "val_perplexity", "val_bpb", "lr")
MAX_TIME = 253_402_300_799  # 9999-12-31 in Unix seconds: later dates do not format


def is_evaluation(record: Any) -> bool:
    """A dict with a non-negative int ``step``; losses, perplexities, ``time`` and ``elapsed`` finite numbers
    if present."""
    if not isinstance(record, dict) or not _is_int(record.get("step")) or record["step"] < 0:
        return False
    numbers_ok = all(_is_finite(record[key]) for key in _NUMBER_FIELDS if key in record)
    times_ok = all(_is_finite(record[key]) and 0 <= record[key] <= MAX_TIME for key in ("time", "elapsed")
                   if key in record)
    return numbers_ok and times_ok


def wall_seconds(first: dict, last: dict) -> float | None:
    """Seconds of training from evaluation ``first`` to ``last``, pauses between a stop and its resume left
    out (``elapsed``); runs from before 2026-11-26 have only the clock's ``time``; None if neither."""
    for key in ("elapsed", "time"):
        if key in first and key in last:
            return last[key] - first[key]
    return None


def seconds_trained(metrics: list[dict]) -> float:
    """Where the clock of a resumed run starts again: the seconds trained up to its last evaluation."""
    if not metrics:
        return 0.0
    if "elapsed" in metrics[-1]:
        return metrics[-1]["elapsed"]
    return max(wall_seconds(metrics[0], metrics[-1]) or 0.0, 0.0)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    if _is_int(value):
        return abs(value) <= 2**53  # larger ints do not convert to a float exactly, or at all
    return isinstance(value, float) and math.isfinite(value)


def parse_line(raw: bytes) -> Any:
    """The JSON value of one metrics line, or None for a line that is not UTF-8 JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None
