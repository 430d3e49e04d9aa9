"""Cost rows (one per clip) and `cost_report.csv`, with the existing scripts' columns first."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from musicsweep.atomic import atomic_write_text
from musicsweep.layout import COSTS_DIR, SweepDir


@dataclass(frozen=True)
class CostRow:
    """What one clip cost: its share of its batch's generation time at the host's hourly rate.

    A clip resumed from a window checkpoint (`resumed_from_window`, else None) also counts its share
    of the earlier attempts' time up to that checkpoint.
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

    @classmethod
    def from_dict(cls, payload: dict) -> CostRow:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in payload.items() if key in known})

    def to_dict(self) -> dict:
        return asdict(self)


COLUMNS = [f.name for f in fields(CostRow)]


def marginal_cost_usd(generation_time_s: float, hourly_cost_usd: float) -> float:
    return round(generation_time_s * hourly_cost_usd / 3600.0, 8)


def render_cost_report(rows: list[CostRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r.s3_filename):
        writer.writerow({key: "" if value is None else value for key, value in row.to_dict().items()})
    return buffer.getvalue()


def write_cost_report(rows: list[CostRow], path: Path) -> None:
    atomic_write_text(path, render_cost_report(rows))


def read_cost_rows(folder: Path) -> list[CostRow]:
    """Every cost row (`{job_id}.json`) in a sweep's pulled `costs/` folder."""
    return [CostRow.from_dict(json.loads(path.read_text())) for path in sorted(Path(folder).glob("*.json"))]


def read_cost_report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def merge_cost_report(sweep: SweepDir) -> Path:
    """Rewrite the sweep's `cost_report.csv` from every pulled cost row."""
    write_cost_report(read_cost_rows(sweep.folder(COSTS_DIR)), sweep.cost_report)
    return sweep.cost_report
