"""``tinylm runs [DIR]``: one table of the runs under ``runs/`` (or DIR), newest first.

    tinylm runs
    tinylm runs experiments/ --sort val      # lowest val loss first

Columns: name, closest preset, step of the last evaluation, its val loss estimate, the exact val
loss from the run card (``report.md``; "-" without one), wall time and the date of the last evaluation.
"""

from __future__ import annotations

import argparse
import time

HEADER = ("name", "preset", "step", "val loss", "exact val", "wall", "date")


def register(subparsers) -> None:
    runs = subparsers.add_parser("runs", help="a table of the runs under runs/", description="List runs.")
    runs.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="where the runs are (default: runs)")
    runs.add_argument("--sort", choices=["date", "val"], default="date", help="newest first (date) or lowest val loss")
    runs.set_defaults(handler=cmd_runs)


def format_row(row: dict) -> tuple[str, ...]:
    """The table's cells; "-" for what the run's metrics lines lack."""
    date = "-" if row["time"] is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(row["time"]))
    val = "-" if row["val_loss"] is None else f"{row['val_loss']:.4f}"
    wall = "-" if row["wall_s"] is None else f"{row['wall_s']:.0f}s"
    return (row["name"], row["preset"], str(row["step"]), val, row["exact_val"], wall, date)


def cmd_runs(args: argparse.Namespace) -> int:
    from tinylm.report import list_runs

    rows = [format_row(row) for row in list_runs(args.dir, args.sort)]
    if not rows:
        print(f"no runs under {args.dir}")
        return 0
    widths = [max(len(cells[i]) for cells in [HEADER, *rows]) for i in range(len(HEADER))]
    for cells in [HEADER, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
    return 0
