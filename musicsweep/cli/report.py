"""`musicsweep report` / `python -m musicsweep.report SWEEP`: write the listening report of a sweep,
or serve it on 127.0.0.1 to rate clips (`--serve`) or compare them blind (`--serve --ab AXIS`)."""

from __future__ import annotations

import argparse
import sys

from musicsweep.cli.logs import show_library_logs
from musicsweep.config import load_config
from musicsweep.curate.favourites import resolve_sweep
from musicsweep.curate.ratings import check_rater, default_rater
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir, latest_sweep
from musicsweep.report.build import write_report


def sweep_of(name: str | None) -> SweepDir:
    """The named sweep (or folder path); the latest one of sweeps_dir when no name is given."""
    if name:
        return resolve_sweep(name)
    sweeps_dir = load_config().sweeps_dir
    return SweepDir(sweeps_dir, latest_sweep(sweeps_dir))


def serve(sweep: SweepDir, rater: str, ab_axis: str | None, workers: int | None, port: int) -> None:
    """Serve until Ctrl-C; the URL (with its token) is printed once, and no browser is opened."""
    from musicsweep.curate.server import open_server

    server = open_server(sweep, rater, ab_axis, workers, port)
    what = f"blind A/B page ({ab_axis})" if ab_axis else "rating page"
    print(f"{what} for {sweep.name} (as {rater}): {server.url}", flush=True)
    print("stop with Ctrl-C; every change is already saved", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    show_library_logs()
    parser = argparse.ArgumentParser(
        prog="python -m musicsweep.report", description="Write the HTML listening report of a sweep."
    )
    parser.add_argument("sweep", nargs="?", help="sweep name or path to a sweep folder (default: the latest)")
    parser.add_argument("--workers", type=int, default=None, help="processes drawing images (default: all cores)")
    parser.add_argument("--serve", action="store_true", help="serve the page on 127.0.0.1 to rate clips")
    parser.add_argument("--ab", metavar="AXIS", help="with --serve: blind A/B of clips that differ only on AXIS")
    parser.add_argument("--rater", help="name saved with each rating (default: your OS user name)")
    parser.add_argument("--port", type=int, default=0, help="with --serve: the port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        if args.workers is not None and args.workers < 1:
            raise MusicsweepError(f"--workers: must be at least 1, got {args.workers}")
        if (args.ab or args.rater or args.port) and not args.serve:
            raise MusicsweepError("--ab, --rater and --port go with --serve")
        if not 0 <= args.port <= 65535:
            raise MusicsweepError(f"--port: must be from 0 to 65535, got {args.port}")
        sweep = sweep_of(args.sweep)
        if args.serve:
            serve(sweep, check_rater(args.rater or default_rater()), args.ab, args.workers, args.port)
            return 0
        print(f"report: {write_report(sweep, args.workers)}")
        return 0
    except MusicsweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
