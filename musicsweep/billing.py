"""What a backend tells the estimate and the bill about the machines it pays for.

A seam of its own, apart from `Backend`'s lifecycle: `costs/` prices shards and sums the bill
through `Billing` without importing any backend, and `backends/` hands over these records without
importing any cost code. Plain hosts bill with `HostBilling`; EC2 and RunPod bring their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from musicsweep.layout import SweepDir
    from musicsweep.manifest import Manifest

WorkerKey = tuple[str, int]  # (launch id, worker id)


@dataclass(frozen=True)
class MachineTime:
    """A worker's paid span (epoch seconds) and its hourly rate."""

    start: float
    end: float
    hourly_cost_usd: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def cost_usd(self) -> float:
        return self.seconds * self.hourly_cost_usd / 3600.0


@dataclass(frozen=True)
class EstimateFigures:
    """What a backend's own settings know better than history: EC2's `throughput` and `startup_minutes`."""

    throughput: tuple[float, str] | None = None  # audio s per wall s for every model, and its key
    boot: tuple[float, str] | None = None  # seconds, and its key


class Billing(Protocol):
    """A backend's machines as the estimate and the cost summary see them."""

    spends_money: bool  # a launch asks for confirmation
    boots_machines: bool  # the bill starts at a machine's boot (EC2, RunPod)

    def machine_kind(self, host: str) -> str:
        """What the estimate's calibration is keyed by, for a shard's host: its label, or a cloud's type."""
        ...

    def estimate_figures(self) -> EstimateFigures:
        """Figures this backend's own settings give, which beat history."""
        ...

    def worker_machines(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, str]:
        """The machine each worker really ran on where it can differ from `machine_kind` at plan
        time (a fallback instance or GPU type), so the calibration files it under the right one."""
        ...

    def machine_times(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, MachineTime]:
        """The provider's own paid (start, end, hourly rate) per worker, where it has one; workers
        missing here count their own recorded lifetime."""
        ...


@dataclass(frozen=True)
class HostBilling:
    """Hosts that are there anyway (this machine, SSH hosts, a cluster): keyed by host label, paid
    by the workers' own lifetimes at the configured hourly rate."""

    spends_money: bool = False
    boots_machines: bool = False

    def machine_kind(self, host: str) -> str:
        return host

    def estimate_figures(self) -> EstimateFigures:
        return EstimateFigures()

    def worker_machines(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, str]:
        return {}

    def machine_times(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, MachineTime]:
        return {}
