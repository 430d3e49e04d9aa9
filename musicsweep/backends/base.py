"""The executor interface every backend implements, and the job-state rules they share."""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from typing import ClassVar

from musicsweep.config import Config
from musicsweep.cost_summary import MachineTime, WorkerKey
from musicsweep.job import Job
from musicsweep.layout import SweepDir

DONE, DONE_ORPHANS, FAILED, RUNNING, LOST, PENDING = (
    "done",
    "done_orphans",
    "failed",
    "running",
    "lost",
    "pending",
)
FINISHED_STATES = (DONE, FAILED)


@dataclass
class Shard:
    """The jobs one worker process runs, on one host."""

    host: str
    worker_id: int
    jobs: list[Job]
    hourly_cost_usd: float = 0.0


@dataclass
class Launch:
    """What `submit` needs beyond the shards: the environment contract's sweep-wide values."""

    sweep: SweepDir
    launch_id: str
    is_restart: bool
    env: dict[str, str]


@dataclass
class HostProbe:
    """One round trip's view of a host: live pids, job pid files, and marker names."""

    alive_pids: set[int] = field(default_factory=set)
    job_pids: dict[str, tuple[int, int]] = field(default_factory=dict)  # job_id -> (pid, pgid)
    worker_pids: dict[int, int] = field(default_factory=dict)  # worker_id -> launcher-recorded pid
    markers: set[str] = field(default_factory=set)  # "{job_id}.done" / "{job_id}.failed"


PROBE_SCRIPT = r"""
cd {work_dir} 2>/dev/null || {{ echo '#missing'; exit 0; }}
echo '#ps'; ps -e -o pid=,stat=
echo '#jobs'; for f in jobs/*.pid; do [ -e "$f" ] && echo "$f $(cat "$f")"; done
echo '#workers'; for f in scripts/*.pid; do [ -e "$f" ] && echo "$f $(cat "$f")"; done
echo '#markers'; [ -d {markers} ] && ls {markers}
true
"""


def probe_command(work_dir: str, markers_dir: str) -> str:
    """A bash command reporting everything `parse_probe` needs, in one round trip."""
    return PROBE_SCRIPT.format(work_dir=shlex.quote(work_dir), markers=shlex.quote(markers_dir))


def parse_probe(output: str) -> HostProbe:
    probe = HostProbe()
    section = ""
    for line in output.splitlines():
        if line.startswith("#"):
            section = line[1:].strip()
            continue
        parts = line.split()
        if not parts:
            continue
        if section == "ps" and len(parts) >= 2 and not parts[1].startswith("Z"):
            probe.alive_pids.add(int(parts[0]))
        elif section == "jobs" and len(parts) >= 3:
            job_id = parts[0].rsplit("/", 1)[-1].removesuffix(".pid")
            probe.job_pids[job_id] = (int(parts[1]), int(parts[2]))
        elif section == "workers" and len(parts) >= 2:
            worker_id = int(parts[0].rsplit("_", 1)[-1].removesuffix(".pid"))
            probe.worker_pids[worker_id] = int(parts[1])
        elif section == "markers":
            probe.markers.update(parts)
    return probe


def classify(jobs: dict[str, int], probe: HostProbe) -> dict[str, str]:
    """States of one host's jobs (job_id -> worker_id), by the contract in DESIGN.md.

    A job whose `.done` is present while its worker is alive is `done` if the worker still has
    unfinished jobs, and `done_orphans` once every job of that worker is finished.
    """
    finished = {job_id for job_id in jobs if {f"{job_id}.done", f"{job_id}.failed"} & probe.markers}
    pid_of: dict[str, int | None] = {}
    for job_id, worker_id in jobs.items():
        if job_id in probe.job_pids:
            pid_of[job_id] = probe.job_pids[job_id][0]
        else:
            pid_of[job_id] = probe.worker_pids.get(worker_id)
    unfinished_by_pid: dict[int, int] = defaultdict(int)
    for job_id, pid in pid_of.items():
        if pid is not None and job_id not in finished:
            unfinished_by_pid[pid] += 1
    states: dict[str, str] = {}
    for job_id in jobs:
        pid = pid_of[job_id]
        alive = pid is not None and pid in probe.alive_pids
        if f"{job_id}.done" in probe.markers:
            states[job_id] = DONE_ORPHANS if alive and unfinished_by_pid[pid] == 0 else DONE
        elif f"{job_id}.failed" in probe.markers:
            states[job_id] = FAILED
        elif pid is None:
            states[job_id] = PENDING
        else:
            states[job_id] = RUNNING if alive else FAILED
    return states


class Backend(ABC):
    """Small executor interface: validate, shard, submit, poll, fetch, kill, cancel."""

    name: ClassVar[str]
    spends_money: ClassVar[bool] = False

    def __init__(self, config: Config) -> None:
        self.config = config

    def validate(self, dry_run: bool = False) -> None:
        """Check everything a launch needs (hosts, credentials, limits) before any write.

        A dry run checks without writing anything, on this machine or a host.
        """
        return None

    @abstractmethod
    def shard(self, jobs: list[Job]) -> list[Shard]:
        """Split jobs over workers; jobs of one (model, params, duration) stay together."""

    @abstractmethod
    def submit(self, launch: Launch, shards: list[Shard]) -> dict:
        """Write scripts and start workers; returns backend state to keep in the manifest."""

    @abstractmethod
    def poll(self, sweep: SweepDir, manifest: dict) -> dict[str, str]:
        """Every job's state, with one round trip per host."""

    @abstractmethod
    def kill_orphans(self, sweep: SweepDir, manifest: dict, job_ids: list[str]) -> None:
        """Kill the process trees of workers whose jobs are all finished."""

    @abstractmethod
    def fetch(self, sweep: SweepDir, manifest: dict) -> None:
        """Bring finished results into the local sweep folder."""

    @abstractmethod
    def cancel(self, sweep: SweepDir, manifest: dict) -> None:
        """Stop every worker of the sweep."""

    def cleanup(self, sweep: SweepDir, manifest: dict) -> None:
        """Release any paid resource left (instances, pods); nothing to do for plain hosts."""
        return None

    def machine_times(self, sweep: SweepDir, manifest: dict) -> dict[WorkerKey, MachineTime]:
        """The provider's own paid (start, end, hourly rate) per (launch id, worker id), where it has
        one (EC2 spot price history, RunPod costPerHr); workers missing here count their own lifetime."""
        return {}


def balanced_shards(jobs: list[Job], slots: list[tuple[str, float]]) -> list[Shard]:
    """Spread jobs over (host, hourly cost) slots in balanced shards, keeping batchable jobs together.

    Jobs are sorted by group so each shard holds contiguous runs of one (model, params, duration),
    then cut into nearly equal consecutive pieces, one per slot (fewer when there are few jobs).
    """
    ordered = sorted(jobs, key=lambda j: (j.model, repr(j.params), j.duration_s, j.job_id))
    count = min(len(slots), len(ordered))
    shards = []
    start = 0
    for index in range(count):
        size = len(ordered) // count + (1 if index < len(ordered) % count else 0)
        host, rate = slots[index]
        shards.append(Shard(host, index, ordered[start : start + size], rate))
        start += size
    return shards
