"""`{sweep}/runpod/pods.json`: every pod the sweep created, and its paid life, kept on this machine.

RunPod forgets a terminated pod, so this ledger is the only record of what was paid; `pods.csv`
is the same as a table, rewritten with it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from musicsweep.atomic import atomic_write_json, atomic_write_text
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir
from musicsweep.remote.hosts import hosts_from_state
from musicsweep.remote.ssh import SSHHost

COST_COLUMNS = ["pod_id", "gpu_type", "launch_id", "worker_id", "created", "ended", "hours", "cost_per_hr", "cost"]


@dataclass
class PodRecord:
    """One pod this sweep created: which worker it runs, how to reach it, and its paid life."""

    pod_id: str
    name: str
    gpu_type: str
    launch_id: str
    worker_id: int
    created: float
    cost_per_hr: float = 0.0
    host: dict | None = None  # the SSHHost entry, once the pod is ready
    ended: float | None = None
    terminated_by: str | None = None
    final_states: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.ended is None

    def ssh_host(self) -> SSHHost:
        return hosts_from_state({self.pod_id: self.host})[self.pod_id]


def read_ledger(path: Path) -> dict[str, PodRecord]:
    """The pods on record; an unreadable ledger stops the command with one line and is never
    written over, since it is what tells which pods of the sweep may still cost money."""
    try:
        raw = json.loads(path.read_text())
        return {pod_id: PodRecord(**entry) for pod_id, entry in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise MusicsweepError(
            f"{path}: unreadable pod ledger ({reason}); restore or fix it by hand (it lists the sweep's pods, "
            "which may still be running: check the RunPod console)"
        ) from None


class PodLedger:
    """The ledger of one sweep, written after each change."""

    def __init__(self, sweep: SweepDir) -> None:
        self.path = sweep.pod_ledger
        self.costs_path = sweep.pod_costs
        self.pods = read_ledger(self.path)

    def save(self) -> None:
        atomic_write_json(self.path, {pod_id: dataclasses.asdict(r) for pod_id, r in self.pods.items()})
        self.write_costs()

    def add(self, record: PodRecord) -> None:
        self.pods[record.pod_id] = record
        self.save()

    def running(self, launch_id: str, worker_id: int) -> PodRecord | None:
        """The pod that was given this worker (the last one created for it, i.e. the ready one)."""
        matches = [r for r in self.pods.values() if (r.launch_id, r.worker_id) == (launch_id, worker_id) and r.host]
        return max(matches, key=lambda r: r.created) if matches else None

    def provisioning(self, launch_id: str, worker_id: int, ready_timeout_s: float) -> bool:
        """A live pod of this worker awaits readiness; without one, its launch failed before a pod was ready."""
        since = time.time() - ready_timeout_s
        return any(
            (r.launch_id, r.worker_id) == (launch_id, worker_id) and r.live and r.host is None and r.created > since
            for r in self.pods.values()
        )

    def write_costs(self) -> None:
        """pods.csv: each pod's lifetime and price, discarded (never ready) pods included."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COST_COLUMNS)
        now = time.time()
        for r in sorted(self.pods.values(), key=lambda r: r.created):
            hours = ((r.ended or now) - r.created) / 3600.0
            row = [r.pod_id, r.gpu_type, r.launch_id, r.worker_id, r.created, r.ended or "", f"{hours:.6f}"]
            writer.writerow([*row, r.cost_per_hr, f"{hours * r.cost_per_hr:.6f}"])
        atomic_write_text(self.costs_path, buffer.getvalue())


def pod_name(sweep: str, launch_id: str, worker_id: int) -> str:
    """Space-separated, since sweep names cannot hold spaces: `--cleanup` matches the sweep exactly."""
    return f"musicsweep {sweep} {launch_id} w{worker_id}"


def named_after(name: str, sweep: str) -> bool:
    parts = name.split(" ")
    return len(parts) == 4 and parts[:2] == ["musicsweep", sweep] and re.fullmatch(r"w\d+", parts[3]) is not None


def record_of_stray(pod_id: str, name: str, cost_per_hr: float) -> PodRecord:
    """A record for a pod named after the sweep that the ledger lacks (created on another machine)."""
    _, _, launch_id, worker = name.split(" ")
    return PodRecord(pod_id, name, "", launch_id, int(worker[1:]), time.time(), cost_per_hr)
