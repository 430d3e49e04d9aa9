"""`musicsweep pull` (= `python -m musicsweep.auto_pull [SWEEP]`): follow a sweep to its end and print it.

The following itself is `sweep.follow`; this module parses the arguments, shows each round and
notice, writes the listening report when asked, and prints the bill.

Exit status: 0 when every job is done, 1 when some failed, 2 on an error, 3 when `--once` found
jobs still running.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from musicsweep.cli.display import SweepProgress, print_summary, summarize
from musicsweep.cli.logs import show_library_logs
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir
from musicsweep.sweep.follow import FollowOptions, Notice, Round, Settled, follow
from musicsweep.sweep.launched import open_launched
from musicsweep.terminal import console


def pull(name: str | None, report: bool = False, **options: Any) -> int:
    """Follow sweep `name` (default: the latest) with `FollowOptions(**options)`; returns the exit status."""
    sweep, manifest, config, backend = open_launched(name)
    settled = None
    with SweepProgress(sweep.name) as progress:
        for event in follow(sweep, manifest, config, backend, FollowOptions(**options)):
            if isinstance(event, Notice):
                console.print(event.line)
            elif isinstance(event, Round):
                progress.update(event.states, event.hosts, event.throughput)
            else:
                settled = event
    if settled is None:
        return 3
    for line in settled.calibration:
        console.print(line)
    if report:  # after the cost summary, whose paid total the report shows
        from musicsweep.report.build import write_report

        console.print(f"report: {write_report(sweep)}")
    print_settled(sweep, settled)
    return 0 if settled.all_done else 1


def print_settled(sweep: SweepDir, settled: Settled) -> None:
    for line in settled.cost.lines() + (settled.beside.lines() if settled.beside else []):
        console.print(line)
    print_summary(summarize(sweep, settled.manifest, settled.cost))
    console.print(f"results in {sweep.root} (audio/, cost_report.csv, cost_summary.json)")
    if settled.failed:
        console.print(f"{len(settled.failed)} job(s) failed: {', '.join(settled.failed)}")
        for job_id, reason in settled.failed.items():
            if reason is not None:
                console.print(f"  {job_id}: {reason}")


def main(argv: list[str] | None = None) -> int:
    show_library_logs()
    parser = argparse.ArgumentParser(prog="python -m musicsweep.auto_pull", description=__doc__)
    parser.add_argument("sweep", nargs="?", help="sweep name (default: the latest)")
    parser.add_argument("--once", action="store_true", help="poll once and exit")
    parser.add_argument(
        "--interval", type=float, default=None, help="longest wait between polls (default: 2 s local, 10 s remote)"
    )
    parser.add_argument(
        "--relaunch-failed",
        action="store_true",
        help="resubmit failed jobs, and lost ones once their lease expired, within recovery.max_attempts",
    )
    parser.add_argument("--give-up-after", type=float, default=None, help="seconds before a lost job counts as failed")
    parser.add_argument("--kill-stalled", action="store_true", help="kill workers reported stalled (then relaunched)")
    parser.add_argument("--cleanup", action="store_true", help="terminate every paid instance/pod of the sweep")
    parser.add_argument("--report", action="store_true", help="write the HTML listening report at the end")
    parser.add_argument(
        "--orphan-grace", type=float, default=30.0, help="seconds a finished worker may live on before it is killed"
    )
    args = parser.parse_args(argv)
    try:
        return pull(
            args.sweep,
            report=args.report,
            once=args.once,
            interval_s=args.interval,
            relaunch_failed=args.relaunch_failed,
            give_up_after_s=args.give_up_after,
            cleanup=args.cleanup,
            orphan_grace_s=args.orphan_grace,
            kill_stalled=args.kill_stalled,
        )
    except MusicsweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
