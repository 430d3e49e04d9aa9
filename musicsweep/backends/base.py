"""The executor interface every backend implements: validate, shard, submit, poll, fetch, kill, cancel.

Only the lifecycle lives here. What a backend pays for is its `billing` (`musicsweep.billing`), and
what it keeps about a sweep is a typed record of its own (`manifest.BackendState`), so neither the
cost code nor the manifest needs to know any backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from musicsweep.billing import Billing, HostBilling
from musicsweep.config import Config
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import SweepDir
from musicsweep.manifest import BackendState, Manifest
from musicsweep.states import JobState


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


class LaunchFailed(MusicsweepError):
    """`submit` started some workers but not those of `workers`; `state` is still to be kept."""

    def __init__(self, message: str, state: BackendState | None, workers: set[int]) -> None:
        super().__init__(message)
        self.state, self.workers = state, workers


class Backend(ABC):
    """Small executor interface: validate, shard, submit, poll, fetch, kill, cancel."""

    name: ClassVar[str]
    # auto_pull's waits between polls: (after a change, the longest while nothing changes)
    poll_interval_s: ClassVar[tuple[float, float]] = (2.0, 10.0)
    queues: ClassVar[bool] = False  # a worker may wait long in a queue (SLURM): no start timeout
    # `pending` in a poll is an executor the backend found waiting (a queued task, a booting
    # machine, a pod being made), not a worker it has not seen yet: a dead launch's pending jobs
    # will still run, so nothing starts them again (`sweep/observe.py: unseen`).
    pending_is_seen: ClassVar[bool] = False

    @property
    def store_per_host(self) -> bool:
        """True when each host keeps its own store (SSH host-disk): a worker can take clips only there."""
        return False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.unreachable_why: dict[str, str] = {}  # host -> why the last poll could not reach it
        self.billing: Billing = HostBilling()  # cloud backends replace it with their provider's

    def validate(self, dry_run: bool = False) -> None:
        """Check everything a launch needs (hosts, credentials, limits) before any write.

        A dry run checks without writing anything, on this machine or a host.
        """
        return None

    @abstractmethod
    def shard(self, jobs: list[Job]) -> list[Shard]:
        """Split jobs over workers; jobs of one (model, params, duration) stay together."""

    @abstractmethod
    def submit(self, launch: Launch, shards: list[Shard]) -> BackendState | None:
        """Write scripts and start workers; returns this backend's record of the sweep to keep in
        the manifest (None when it keeps nothing there)."""

    @abstractmethod
    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        """Every job's state, with one round trip per host. Read-only: it changes nothing anywhere,
        so a dry run and `status` may call it; `reconcile` acts on what it saw."""

    def reconcile(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Act on the last poll (terminate finished or gone machines, write ledgers); auto_pull only."""
        return None

    @abstractmethod
    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        """Kill the process trees of workers whose jobs are all finished."""

    @abstractmethod
    def fetch(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Bring finished results into the local sweep folder."""

    @abstractmethod
    def cancel(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Stop every worker of the sweep."""

    def cleanup(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Release any paid resource left (instances, pods); nothing to do for plain hosts."""
        return None


def balanced_shards(jobs: list[Job], slots: list[tuple[str, float]]) -> list[Shard]:
    """Spread jobs over (host, hourly cost) slots in balanced shards, keeping batchable jobs together.

    Jobs are sorted by group so each shard holds contiguous runs of one (model, params, duration),
    then cut into nearly equal consecutive pieces, one per slot (fewer when there are few jobs).
    """
    params = {job.params: repr(job.params) for job in jobs}  # one repr per distinct params, not per job
    ordered = sorted(jobs, key=lambda j: (j.model, params[j.params], j.duration_s, j.job_id))
    count = min(len(slots), len(ordered))
    shards = []
    start = 0
    for index in range(count):
        size = len(ordered) // count + (1 if index < len(ordered) % count else 0)
        host, rate = slots[index]
        shards.append(Shard(host, index, ordered[start : start + size], rate))
        start += size
    return shards
