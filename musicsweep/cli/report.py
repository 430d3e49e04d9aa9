"""`musicsweep report` / `python -m musicsweep.report SWEEP`: write the listening report of a sweep."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from musicsweep.cli.logs import show_library_logs
from musicsweep.config import load_config
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir, latest_sweep
from musicsweep.report.build import write_report


def main(argv: list[str] | None = None) -> int:
    show_library_logs()
    parser = argparse.ArgumentParser(
        prog="python -m musicsweep.report", description="Write the HTML listening report of a sweep."
    )
    parser.add_argument("sweep", nargs="?", help="sweep name or path to a sweep folder (default: the latest)")
    parser.add_argument("--workers", type=int, default=None, help="processes drawing images (default: all cores)")
    args = parser.parse_args(argv)
    try:
        if args.workers is not None and args.workers < 1:
            raise MusicsweepError(f"--workers: must be at least 1, got {args.workers}")
        path = Path(args.sweep or "")
        if args.sweep and (path / "manifest.json").exists():
            sweep = SweepDir(path.resolve().parent, path.resolve().name)
        else:
            sweeps_dir = load_config().sweeps_dir
            sweep = SweepDir(sweeps_dir, args.sweep or latest_sweep(sweeps_dir))
        print(f"report: {write_report(sweep, args.workers)}")
        return 0
    except MusicsweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
