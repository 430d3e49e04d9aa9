"""The estimate made at launch beside what was measured, part by part, with the ratio.

The estimates are those the manifest's launch records kept; the measured totals are the bill of
`costs/summary.py` (paid machine time x rate, a provider's own figures winning), and the parts
come from the workers' lifetime records as the calibration reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from musicsweep.billing import MachineTime, WorkerKey
from musicsweep.costs.calibration import MeasuredWorker, read_measured
from musicsweep.costs.estimate import PARTS
from musicsweep.costs.summary import CostSummary, write_cost_summary
from musicsweep.layout import SweepDir
from musicsweep.manifest import Manifest


def _ratio(measured: float, estimated: float) -> float | None:
    return measured / estimated if estimated > 0 else None


@dataclass(frozen=True)
class EstimateBeside:
    estimated_s: float
    estimated_usd: float
    range_s: tuple[float, float]
    range_usd: tuple[float, float]
    measured_s: float
    measured_usd: float
    estimated_parts: dict[str, float]
    measured_parts: dict[str, float]
    launches: int  # launches with an estimate
    unestimated: int  # launches without one (made before estimates were kept)

    @property
    def ratio_s(self) -> float | None:
        return _ratio(self.measured_s, self.estimated_s)

    @property
    def ratio_usd(self) -> float | None:
        return _ratio(self.measured_usd, self.estimated_usd)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": {
                "machine_s": self.estimated_s,
                "paid_usd": self.estimated_usd,
                "range_s": list(self.range_s),
                "range_usd": list(self.range_usd),
                "parts": self.estimated_parts,
                "launches": self.launches,
                "launches_without_estimate": self.unestimated,
            },
            "measured_parts": self.measured_parts,
            "estimate_ratio": {"machine_s": self.ratio_s, "paid_usd": self.ratio_usd},
        }

    def lines(self) -> list[str]:
        def ratio(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        low, high = self.range_s
        missing = f" ({self.unestimated} launch(es) had no estimate)" if self.unestimated else ""
        estimated, measured = self.estimated_parts, self.measured_parts
        parts = ", ".join(
            f"{part.replace('_', ' ')} {estimated.get(part, 0.0):.1f}s/{measured.get(part, 0.0):.1f}s" for part in PARTS
        )
        return [
            f"estimate at launch: {self.estimated_s:.1f}s machine time (range {low:.1f}-{high:.1f}s), "
            f"${self.estimated_usd:.6f}; measured {self.measured_s:.1f}s, ${self.measured_usd:.6f}; "
            f"measured/estimate {ratio(self.ratio_s)} (time), {ratio(self.ratio_usd)} (paid){missing}",
            f"estimated/measured: {parts}",
        ]


def beside_estimate(manifest: Manifest, measured: list[MeasuredWorker], cost: CostSummary) -> EstimateBeside | None:
    """None when no launch of the sweep kept an estimate."""
    estimates = [launch.estimate for launch in manifest.launches if launch.estimate]
    if not estimates:
        return None

    def total(name: str, index: int | None = None) -> float:
        return sum(float(e[name] if index is None else e[name][index]) for e in estimates)

    return EstimateBeside(
        estimated_s=total("machine_s"),
        estimated_usd=total("paid_usd"),
        range_s=(total("range_s", 0), total("range_s", 1)),
        range_usd=(total("range_usd", 0), total("range_usd", 1)),
        measured_s=cost.machine_s,
        measured_usd=cost.paid_usd,
        estimated_parts={part: sum(float(e["parts"].get(part, 0.0)) for e in estimates) for part in PARTS},
        measured_parts={part: sum(getattr(worker, f"{part}_s") or 0.0 for worker in measured) for part in PARTS},
        launches=len(estimates),
        unestimated=sum(1 for launch in manifest.launches if not launch.estimate and launch.jobs),
    )


def write_summary_beside_estimate(
    sweep: SweepDir, manifest: Manifest, paid: Mapping[WorkerKey, MachineTime]
) -> tuple[CostSummary, EstimateBeside | None]:
    """`cost_summary.json` with the launch estimates beside the bill; returns both for printing."""
    measured = read_measured(sweep, paid, finished_only=False)
    found: list[EstimateBeside] = []

    def extra(cost: CostSummary) -> dict[str, Any]:
        beside = beside_estimate(manifest, measured, cost)
        found.extend([beside] if beside else [])
        return beside.to_dict() if beside else {}

    cost = write_cost_summary(sweep, paid, extra)
    return cost, found[0] if found else None
