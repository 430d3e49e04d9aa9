"""The executor interface every backend implements, and the job-state rules they share."""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import ClassVar

from musicsweep.config import Config
from musicsweep.costs.summary import MachineTime, WorkerKey
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


@dataclass(frozen=True)
class Executor:
    """What runs a group of jobs (a worker process, a SLURM task, an instance) as one poll saw it."""

    state: str  # the state of its unfinished jobs: PENDING, RUNNING, FAILED or LOST
    alive: bool  # still running, and billing: once all its jobs are finished it is an orphan


def job_states(
    executor_of: dict[str, Hashable], executors: dict[Hashable, Executor], markers: set[str]
) -> dict[str, str]:
    """Every job's state by the contract in docs/architecture.md (Contracts), for any backend.

    Markers decide first. A job whose `.done` is present while its executor is alive is `done` if
    the executor still has unfinished jobs, and `done_orphans` once every one of them is finished.
    A job with no marker takes its executor's state.
    """
    finished = {job_id for job_id in executor_of if {f"{job_id}.done", f"{job_id}.failed"} & markers}
    busy = {key for job_id, key in executor_of.items() if job_id not in finished}
    states: dict[str, str] = {}
    for job_id, key in executor_of.items():
        executor = executors[key]
        if f"{job_id}.done" in markers:
            states[job_id] = DONE_ORPHANS if executor.alive and key not in busy else DONE
        elif f"{job_id}.failed" in markers:
            states[job_id] = FAILED
        else:
            states[job_id] = executor.state
    return states


def pid_executor(pid: int | None, alive_pids: set[int]) -> Executor:
    """A worker process: not started yet (no pid), alive, or dead without finishing its jobs."""
    if pid is None:
        return Executor(PENDING, False)
    return Executor(RUNNING, True) if pid in alive_pids else Executor(FAILED, False)


def classify(jobs: dict[str, int], probe: HostProbe) -> dict[str, str]:
    """States of one host's jobs (job_id -> worker_id): the executor is the pid of the job's
    worker (its own pid file, else the launcher's record of the worker), or none yet: pending."""
    pid_of = {
        job_id: probe.job_pids[job_id][0] if job_id in probe.job_pids else probe.worker_pids.get(worker_id)
        for job_id, worker_id in jobs.items()
    }
    executors = {pid: pid_executor(pid, probe.alive_pids) for pid in set(pid_of.values())}
    return job_states(pid_of, executors, probe.markers)


class Backend(ABC):
    """Small executor interface: validate, shard, submit, poll, fetch, kill, cancel."""

    name: ClassVar[str]
    spends_money: ClassVar[bool] = False
    # auto_pull's waits between polls: (after a change, the longest while nothing changes)
    poll_interval_s: ClassVar[tuple[float, float]] = (2.0, 10.0)

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
