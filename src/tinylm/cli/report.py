"""``tinylm report --run DIR``: (re)write the run card ``DIR/report.md`` (and ``loss.png``).

    tinylm report --run runs/a1
    tinylm report --run runs/a1 --preset attention-1 --sample-chars 300
"""

from __future__ import annotations

import argparse

from tinylm.presets import PRESETS


def register(subparsers) -> None:
    report = subparsers.add_parser("report", help="write a run's report.md (the run card)",
                                   description="Write report.md: config, machine, time, losses, curve, samples.")
    report.add_argument("--run", required=True, metavar="DIR", help="a run directory with a checkpoint")
    report.add_argument("--preset", choices=list(PRESETS),
                        help="the preset the run started from (default: the closest one)")
    report.add_argument("--sample-chars", type=int, default=200, metavar="N", help="length of each of two samples")
    report.add_argument("--device", default="auto")
    report.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from tinylm.errors import TinyLMError
    from tinylm.report import write_report

    if args.sample_chars < 0:
        raise TinyLMError(f"--sample-chars must be >= 0, got {args.sample_chars}")
    print(f"wrote {write_report(args.run, args.preset, sample_chars=args.sample_chars, device=args.device)}")
    return 0
