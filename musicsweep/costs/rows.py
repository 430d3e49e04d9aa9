"""Cost rows (one per clip) and `cost_report.csv`, with the existing scripts' columns first."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

from musicsweep.atomic import atomic_write_text
from musicsweep.layout import COSTS_DIR, SweepDir


@dataclass(frozen=True)
class CostRow:
    """What one clip cost: its share of its batch's generation time at the host's hourly rate.

    A clip resumed from a window checkpoint (`resumed_from_window`, else None) also counts its share
    of the earlier attempts' time up to that checkpoint. `launch_id` and `worker_id` name the worker
    that made it (with dynamic assignment, not always the one whose shard it was in), `finished_at`
    when it was in the store: each worker's throughput (`costs/throughput.py`). Rows written before
    these existed read None.
    """

    s3_filename: str
    prompt: str
    requested_duration_s: float
    generation_time_s: float | None
    estimated_cost_usd: float | None
    model: str
    seed: int
    job_id: str
    host: str
    hourly_cost_usd: float
    audio_seconds: float
    worker_id: int = 0
    batch_size: int = 1
    resumed_from_window: int | None = None
    launch_id: str | None = None
    finished_at: float | None = None

    @classmethod
    def from_dict(cls, payload: dict) -> CostRow:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in payload.items() if key in known})

    def to_dict(self) -> dict:
        """Its fields (all plain values: no `asdict` deep copy, a tenth of a round at 10,000 clips)."""
        return {name: getattr(self, name) for name in COLUMNS}


COLUMNS = [f.name for f in fields(CostRow)]
JOB_ID = COLUMNS.index("job_id")
STAMP_MARGIN_NS = 2_000_000_000  # file clocks may lag the wall clock (coarse ticks, 2 s on FAT)


def marginal_cost_usd(generation_time_s: float, hourly_cost_usd: float) -> float:
    return round(generation_time_s * hourly_cost_usd / 3600.0, 8)


def cells(row: CostRow) -> list[str]:
    """A row as `cost_report.csv` holds it: its COLUMNS' values as text, "" for None."""
    return ["" if value is None else str(value) for value in row.to_dict().values()]


def render_records(records: list[list[str]]) -> str:
    """The report's text: the header, then `records` (lists of COLUMNS' cells) by file name, then job id."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(sorted(records, key=lambda record: (record[0], record[JOB_ID])))
    return buffer.getvalue()


def render_cost_report(rows: list[CostRow]) -> str:
    return render_records([cells(row) for row in rows])


def write_cost_report(rows: list[CostRow], path: Path) -> None:
    atomic_write_text(path, render_cost_report(rows))


def read_cost_rows(folder: Path) -> list[CostRow]:
    """Every cost row (`{job_id}.json`) in a sweep's pulled `costs/` folder."""
    return [CostRow.from_dict(json.loads(path.read_text())) for path in sorted(Path(folder).glob("*.json"))]


def read_cost_report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def merge_cost_report(sweep: SweepDir) -> Path:
    """Bring the sweep's `cost_report.csv` up to date with every pulled cost row."""
    update_cost_report(sweep)
    return sweep.cost_report


def read_records(path: Path) -> list[list[str]] | None:
    """The report's rows as cells, or None when it is missing or not in this version's columns."""
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            if next(reader, None) != COLUMNS:
                return None
            return [record for record in reader if len(record) == len(COLUMNS)]
    except (OSError, csv.Error):
        return None


def update_cost_report(sweep: SweepDir) -> list[dict[str, str]]:
    """`cost_report.csv` from every pulled cost row (`{job_id}.json`), reading only the rows that
    are new or changed since it was written, and rewriting it only when one is; returns its rows.

    Each round of following merges the report, so reading 100,000 JSON files a round took seconds.
    A report's mtime is set to when its reading began, less a margin for coarse file clocks; a row
    whose file was written or renamed (mtime, ctime) since then is read again."""
    started_ns = time.time_ns() - STAMP_MARGIN_NS
    folder, path = sweep.folder(COSTS_DIR), sweep.cost_report
    try:
        with os.scandir(folder) as entries:
            files = {e.name: e for e in entries if e.name.endswith(".json") and not e.name.startswith(".")}
    except FileNotFoundError:
        files = {}
    known = read_records(path) if files else None
    since_ns = path.stat().st_mtime_ns if known is not None else 0
    by_job = {f"{record[JOB_ID]}.json": record for record in known or []}
    changed = known is None or len(by_job) != len(known) or not by_job.keys() <= files.keys()
    records = []
    for name, entry in files.items():
        stat = entry.stat()
        record = by_job.get(name)
        if record is None or max(stat.st_mtime_ns, stat.st_ctime_ns) >= since_ns:
            try:
                with open(entry.path) as handle:
                    record = cells(CostRow.from_dict(json.load(handle)))
            except (ValueError, KeyError, TypeError):  # half-pulled (a store outage mid-download): next round
                changed = True
                continue
            changed = changed or record != by_job.get(name)
        records.append(record)
    if changed:
        atomic_write_text(path, render_records(records))
        os.utime(path, ns=(started_ns, started_ns))
    return [dict(zip(COLUMNS, record, strict=True)) for record in records]
