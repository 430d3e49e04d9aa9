"""The `musicsweep` console script: one entry point for launch, pull, status, cancel, report, list and init.

`launch`, `pull` and `report` hand their arguments to the modules that own them (the Hydra app,
auto_pull, the report), so each keeps one parser; `status` and `cancel` are small enough to live here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from musicsweep.cli.logs import show_library_logs
from musicsweep.errors import MusicsweepError

EXAMPLES = """\
commands:
  launch   compose a sweep with Hydra overrides, plan it and submit it (musicsweep launch --help)
  pull     follow a sweep: poll, kill orphans, pull WAVs, write cost_report.csv (= python -m musicsweep.auto_pull)
  status   one poll of every job's state, per host; pulls nothing
  cancel   stop every worker of a sweep
  report   write the HTML listening report (= python -m musicsweep.report); --serve to rate, --ab AXIS for blind A/B
  ratings  print a sweep's ratings and blind A/B results (--csv FILE to write them)
  doctor   check everything a launch needs, report every problem in one table (--fix: the safe fixes)
  list     every sweep in sweeps_dir, newest first: progress, state, paid cost (--refresh: poll them)
  init     write a commented musicsweep.yaml and an example sweep.py into the current folder

examples:
  musicsweep launch 'sweep.prompts=[lofi piano,dark techno]' 'sweep.durations=[30,180]' sweep.seeds=[1,2]
  musicsweep launch -m model=small,medium sweep.durations=30,60 'sweep.prompts=[ambient pad]' --dry-run
  musicsweep pull                 # the latest sweep, until every job is finished
  musicsweep status night-run
  musicsweep cancel night-run
  musicsweep report night-run
  musicsweep report night-run --serve            # rate clips in the browser; --ab model for blind A/B
  musicsweep launch --from-ratings night-run --min-rating 4 --explore guidance_scale=±1
  musicsweep doctor --backend ssh --fix
  musicsweep init && python sweep.py && musicsweep pull
  musicsweep --version            # the version, and the checkout (git commit) or wheel it runs from
"""


def run_launch(argv: list[str]) -> int:
    if any(arg.split("=")[0] == "--from-ratings" for arg in argv):
        from musicsweep.cli.from_ratings import main as from_ratings

        return from_ratings(argv)
    from musicsweep.cli.hydra_app import main

    return main(argv)


PULL_EXAMPLES = """
examples:
  musicsweep pull                          # the latest sweep, until all jobs are finished
  musicsweep pull night-run --once         # one poll and pull; exit 3 while jobs are still running
  musicsweep pull night-run --relaunch-failed --give-up-after 600 --report"""

REPORT_EXAMPLES = """
examples:
  musicsweep report night-run              # writes runs/night-run/report/index.html
  musicsweep report ./runs/night-run --workers 2"""


def with_examples(argv: list[str], examples: str, main: Callable[[list[str]], int | None]) -> int:
    """Run a module's own `main`; after its `--help`, show examples too (its parser stays the only one)."""
    try:
        return main(argv) or 0
    except SystemExit as done:
        if {"-h", "--help"} & set(argv):
            print(examples)
        return done.code if isinstance(done.code, int) else 2


def run_pull(argv: list[str]) -> int:
    from musicsweep.cli.pull import main

    return with_examples(argv, PULL_EXAMPLES, main)


def run_report(argv: list[str]) -> int:
    from musicsweep.cli.report import main

    return with_examples(argv, REPORT_EXAMPLES, main)


def run_ratings(argv: list[str]) -> int:
    from musicsweep.cli.ratings import main

    return main(argv)


def run_doctor(argv: list[str]) -> int:
    from musicsweep.doctor.run import main

    return main(argv)


def run_list(argv: list[str]) -> int:
    from musicsweep.cli.sweeps_list import main

    return main(argv)


def run_init(argv: list[str]) -> int:
    from musicsweep.cli.init import main

    return main(argv)


def sweep_parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"musicsweep {command}",
        description=description,
        epilog=f"examples:\n  musicsweep {command}            # the latest sweep\n  musicsweep {command} night-run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep", nargs="?", help="sweep name (default: the latest)")
    return parser


def run_status(argv: list[str]) -> int:
    """Exit 0 when every job is finished, 3 while some are not."""
    from musicsweep.cli.display import print_attempts, print_states
    from musicsweep.states import FINISHED_STATES
    from musicsweep.sweep.launched import open_launched
    from musicsweep.sweep.observe import observe

    args = sweep_parser("status", "One poll of every job's state, per host. Pulls nothing, kills nothing.").parse_args(
        argv
    )
    sweep, manifest, config, backend = open_launched(args.sweep)
    seen = observe(sweep, manifest, backend, config)
    print_states(sweep.name, seen.states, {job_id: entry.host for job_id, entry in manifest.jobs.items()})
    print_attempts(manifest, seen.states, seen.reasons, config.recovery.max_attempts)
    return 0 if all(state in FINISHED_STATES for state in seen.states.values()) else 3


def run_cancel(argv: list[str]) -> int:
    from musicsweep.cli.sweeps_list import record_cancel
    from musicsweep.sweep.launched import open_launched
    from musicsweep.sweep.lock import launch_lock

    args = sweep_parser("cancel", "Stop every worker of a sweep. Finished clips stay in the store.").parse_args(argv)
    sweep, manifest, _config, backend = open_launched(args.sweep)
    with launch_lock(sweep, "cancel"):  # a launch in progress finishes starting its workers, then they stop
        backend.cancel(sweep, sweep.read_manifest())  # read again: it names what that launch started
    record_cancel(sweep)
    print(f"cancelled sweep {sweep.name} on {manifest.backend}")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "launch": run_launch,
    "pull": run_pull,
    "status": run_status,
    "cancel": run_cancel,
    "report": run_report,
    "ratings": run_ratings,
    "doctor": run_doctor,
    "list": run_list,
    "init": run_init,
}


def top_parser() -> argparse.ArgumentParser:
    from musicsweep.version import describe

    parser = argparse.ArgumentParser(
        prog="musicsweep",
        description="Launch and follow sweeps of MusicGen text-to-music generation.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=describe())
    parser.add_argument("command", choices=sorted(COMMANDS))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    show_library_logs()
    if not argv or argv[0] not in COMMANDS:
        top_parser().parse_args(argv[:1])  # prints help, or the version, or a usage error
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except MusicsweepError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
