"""What a sweep really cost: paid machine time beside the clips' marginal costs, and the gap.

A clip's marginal cost counts only its share of generation time. The machines are paid for their
whole life, model loading and idle time included, so the paid total is the truth and the gap
between the two is the overhead worth shrinking. Workers record their own lifetimes in
`{sweep}/workers/`; a backend with its own price truth (EC2 spot history, RunPod costPerHr)
supplies `MachineTime` overrides keyed by (launch id, worker id).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from musicsweep.atomic import atomic_write_json
from musicsweep.billing import MachineTime, WorkerKey
from musicsweep.costs.rows import CostRow, read_cost_rows
from musicsweep.layout import COSTS_DIR, WORKERS_DIR, SweepDir


@dataclass(frozen=True)
class WorkerLifetime:
    """One worker process's life as it recorded it (`finished` is False for one that was killed)."""

    launch_id: str
    worker_id: int
    host: str
    machine: MachineTime
    model_load_s: float = 0.0
    generation_s: float = 0.0
    clips: int = 0
    finished: bool = False

    @property
    def key(self) -> WorkerKey:
        return (self.launch_id, self.worker_id)

    @property
    def idle_s(self) -> float:
        return max(0.0, self.machine.seconds - self.model_load_s - self.generation_s)

    @classmethod
    def from_dict(cls, payload: dict) -> WorkerLifetime:
        machine = MachineTime(float(payload["start"]), float(payload["end"]), float(payload["hourly_cost_usd"]))
        return cls(
            launch_id=str(payload.get("launch_id", "")),
            worker_id=int(payload["worker_id"]),
            host=str(payload.get("host", "")),
            machine=machine,
            model_load_s=float(payload.get("model_load_s", 0.0)),
            generation_s=float(payload.get("generation_s", 0.0)),
            clips=int(payload.get("clips", 0)),
            finished=bool(payload.get("finished", False)),
        )


@dataclass(frozen=True)
class CostSummary:
    workers: int
    clips: int
    machine_s: float
    model_load_s: float
    generation_s: float
    idle_s: float
    paid_usd: float
    marginal_usd: float

    @property
    def overhead_usd(self) -> float:
        return self.paid_usd - self.marginal_usd

    @property
    def overhead_fraction(self) -> float | None:
        return self.overhead_usd / self.paid_usd if self.paid_usd > 0 else None

    def to_dict(self) -> dict:
        return asdict(self) | {"overhead_usd": self.overhead_usd, "overhead_fraction": self.overhead_fraction}

    def lines(self) -> list[str]:
        share = "" if self.overhead_fraction is None else f" ({self.overhead_fraction:.0%} of paid)"
        return [
            f"paid: ${self.paid_usd:.6f} for {self.machine_s / 60:.2f} machine-min on {self.workers} worker(s) "
            f"(model load {self.model_load_s:.1f}s, generation {self.generation_s:.1f}s, idle {self.idle_s:.1f}s)",
            f"marginal: ${self.marginal_usd:.6f} for {self.clips} clip(s); overhead ${self.overhead_usd:.6f}{share}",
        ]


def summarize(
    lifetimes: list[WorkerLifetime], rows: list[CostRow], overrides: Mapping[WorkerKey, MachineTime] | None = None
) -> CostSummary:
    """Paid total from machine time x rate (a backend's override wins), marginal from the cost rows.

    A machine the provider billed but whose worker never wrote a lifetime (it never started, or
    died before its first heartbeat) is still paid: it counts as a worker with no work done."""
    overrides = overrides or {}
    workers = [replace(w, machine=overrides[w.key]) if w.key in overrides else w for w in lifetimes]
    recorded = {w.key for w in lifetimes}
    workers += [WorkerLifetime(*key, host="", machine=time) for key, time in overrides.items() if key not in recorded]
    return CostSummary(
        workers=len(workers),
        clips=len(rows),
        machine_s=sum(w.machine.seconds for w in workers),
        model_load_s=sum(w.model_load_s for w in workers),
        generation_s=sum(w.generation_s for w in workers),
        idle_s=sum(w.idle_s for w in workers),
        paid_usd=sum(w.machine.cost_usd for w in workers),
        marginal_usd=sum(row.estimated_cost_usd or 0.0 for row in rows),
    )


def read_lifetimes(folder: Path) -> list[WorkerLifetime]:
    return [WorkerLifetime.from_dict(json.loads(path.read_text())) for path in sorted(Path(folder).glob("*.json"))]


def write_cost_summary(
    sweep: SweepDir,
    overrides: Mapping[WorkerKey, MachineTime] | None = None,
    extra: Callable[[CostSummary], dict] | None = None,
) -> CostSummary:
    """Summarize the pulled `workers/` and `costs/` folders into `cost_summary.json`, with `extra`'s
    keys (the estimate beside the bill, `costs/compare.py`)."""
    summary = summarize(read_lifetimes(sweep.folder(WORKERS_DIR)), read_cost_rows(sweep.folder(COSTS_DIR)), overrides)
    atomic_write_json(sweep.cost_summary, summary.to_dict() | (extra(summary) if extra else {}))
    return summary
