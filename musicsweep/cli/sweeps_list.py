"""`musicsweep list`: every sweep in sweeps_dir, newest first, with its progress and bill.

It reads what is on this disk (each manifest, the markers and cost summary the last poll pulled,
and the note `musicsweep cancel` leaves), so it is instant and free; `--refresh` polls each
sweep's backend once instead of trusting the last pull.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from musicsweep.config import load_config
from musicsweep.errors import MusicsweepError
from musicsweep.layout import MARKERS_DIR, SweepDir, done_marker, failed_marker
from musicsweep.manifest import Manifest
from musicsweep.states import JobState

logger = logging.getLogger(__name__)

CANCELLED = "cancelled"  # in the sweep folder: when `musicsweep cancel` stopped it


@dataclass(frozen=True)
class SweepRow:
    name: str
    created: float
    backend: str
    done: int
    total: int
    state: str  # running | finished | failed | cancelled (| unreachable, with --refresh)
    paid_usd: float | None  # None until a pull has written cost_summary.json


def record_cancel(sweep: SweepDir) -> None:
    (sweep.root / CANCELLED).write_text(f"{time.time()}\n")


def sweep_state(sweep: SweepDir, manifest: Manifest, done: int, failed: int) -> str:
    """Finished when every clip is done, failed when the rest failed, cancelled after a cancel
    that no launch followed, else running."""
    total = len(manifest.jobs)
    if done == total:
        return "finished"
    if done + failed == total:
        return "failed"
    note = sweep.root / CANCELLED
    last_launch = max((launch.time for launch in manifest.launches), default=manifest.created)
    if note.is_file() and float(note.read_text()) >= last_launch:
        return "cancelled"
    return "running"


def pulled_counts(sweep: SweepDir, manifest: Manifest) -> tuple[int, int]:
    """Done and failed clips (failed in their latest attempt) by the markers the last pull brought."""
    markers = sweep.folder(MARKERS_DIR)
    done = {job_id for job_id in manifest.jobs if (markers / done_marker(job_id)).exists()}
    failed = {
        job_id
        for job_id, entry in manifest.jobs.items()
        if job_id not in done and (markers / failed_marker(job_id, entry.launch)).exists()
    }
    return len(done), len(failed)


def polled_counts(sweep: SweepDir) -> tuple[int, int]:
    """Done and failed clips by one poll of the sweep's backend."""
    from musicsweep.sweep.launched import open_launched
    from musicsweep.sweep.observe import observe

    sweep, manifest, config, backend = open_launched(sweep.name)
    states = observe(sweep, manifest, backend, config).states.values()
    done = sum(state in (JobState.DONE, JobState.DONE_ORPHANS) for state in states)
    return done, sum(state == JobState.FAILED for state in states)


def paid(sweep: SweepDir) -> float | None:
    try:
        return float(json.loads(sweep.cost_summary.read_text())["paid_usd"])
    except FileNotFoundError:
        return None


def sweep_rows(sweeps_dir: Path, refresh: bool = False) -> list[SweepRow]:
    rows = []
    for path in sweeps_dir.glob("*/manifest.json"):
        sweep = SweepDir(sweeps_dir, path.parent.name)
        try:
            manifest = sweep.read_manifest()
        except MusicsweepError as error:  # one unreadable sweep does not hide the others
            logger.warning("%s", error)
            continue
        state = None
        try:
            done, failed = polled_counts(sweep) if refresh else pulled_counts(sweep, manifest)
        except MusicsweepError:
            (done, failed), state = pulled_counts(sweep, manifest), "unreachable"
        state = state or sweep_state(sweep, manifest, done, failed)
        rows.append(
            SweepRow(sweep.name, manifest.created, manifest.backend, done, len(manifest.jobs), state, paid(sweep))
        )
    return sorted(rows, key=lambda row: row.created, reverse=True)


def format_rows(rows: list[SweepRow]) -> str:
    table = [("NAME", "CREATED", "BACKEND", "CLIPS", "STATE", "PAID")]
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.created))
        cost = "-" if row.paid_usd is None else f"${row.paid_usd:.2f}"
        table.append((row.name, created, row.backend, f"{row.done}/{row.total}", row.state, cost))
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in table
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="musicsweep list",
        description="Every sweep in sweeps_dir, newest first: name, created, backend, clips done/total, "
        "state (running, finished, failed, cancelled) and paid cost, from the last pull. No remote call.",
        epilog="examples:\n  musicsweep list\n  musicsweep list --refresh",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--refresh", action="store_true", help="poll every sweep's backend once (remote calls)")
    args = parser.parse_args(argv)
    config = load_config()
    rows = sweep_rows(config.sweeps_dir, args.refresh)
    print(format_rows(rows) if rows else f"{config.sweeps_dir}: no sweeps yet")
    return 0
