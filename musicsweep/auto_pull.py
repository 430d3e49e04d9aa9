"""`python -m musicsweep.auto_pull [SWEEP]`: poll every job's state, kill orphans, pull results.

Exit status 0 when every job is done, 1 when some failed, 2 on an error, 3 when stopped by `--once`
with jobs still running.
"""

from __future__ import annotations

import argparse
import sys
import time

from musicsweep.backends import get_backend
from musicsweep.backends.base import DONE, DONE_ORPHANS, FAILED, FINISHED_STATES
from musicsweep.config import load_config
from musicsweep.display import console, print_states
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir, latest_sweep
from musicsweep.pull import merge_cost_report


def poll_once(sweep: SweepDir, manifest: dict, backend) -> dict[str, str]:
    """One poll: states, then orphan kills, then a pull and a fresh cost report."""
    states = backend.poll(sweep, manifest)
    orphans = [job_id for job_id, state in states.items() if state == DONE_ORPHANS]
    if orphans:
        console.print(f"killing the orphan worker(s) of {len(orphans)} finished job(s)")
        backend.kill_orphans(sweep, manifest, orphans)
        states |= dict.fromkeys(orphans, DONE)
    backend.fetch(sweep, manifest)
    merge_cost_report(sweep)
    return states


def pull(name: str | None, once: bool = False, interval_s: float = 10.0) -> int:
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name or latest_sweep(config.sweeps_dir))
    manifest = sweep.read_manifest()
    backend = get_backend(manifest["backend"], config)
    hosts = {job_id: entry.get("host") for job_id, entry in manifest["jobs"].items()}
    while True:
        states = poll_once(sweep, manifest, backend)
        print_states(sweep.name, states, hosts)
        if all(state in FINISHED_STATES for state in states.values()):
            break
        if once:
            return 3
        time.sleep(interval_s)
    backend.cleanup(sweep, manifest)
    failed = sorted(job_id for job_id, state in states.items() if state == FAILED)
    console.print(f"results in {sweep.root} (audio/, cost_report.csv)")
    if failed:
        console.print(f"{len(failed)} job(s) failed: {', '.join(failed)}")
        return 1
    return 0 if all(state == DONE for state in states.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicsweep.auto_pull", description=__doc__)
    parser.add_argument("sweep", nargs="?", help="sweep name (default: the latest)")
    parser.add_argument("--once", action="store_true", help="poll once and exit")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    args = parser.parse_args(argv)
    try:
        return pull(args.sweep, once=args.once, interval_s=args.interval)
    except MusicsweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
