"""Job states and the one rule that derives them, shared by every backend.

Markers decide first. A job whose `.done` is present while its executor is alive is `done` if the
executor still has unfinished jobs, and `done_orphans` once every one of them is finished. A job
with no marker takes its executor's state (see docs/architecture.md, "Job states").
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum

from musicsweep.layout import done_marker, failed_marker


class JobState(StrEnum):
    DONE = "done"
    DONE_ORPHANS = "done_orphans"
    FAILED = "failed"
    RUNNING = "running"
    LOST = "lost"
    PENDING = "pending"


FINISHED_STATES = (JobState.DONE, JobState.FAILED)


@dataclass(frozen=True)
class Executor:
    """What runs a group of jobs (a worker process, a SLURM task, an instance) as one poll saw it."""

    state: JobState  # the state of its unfinished jobs: PENDING, RUNNING, FAILED or LOST
    alive: bool  # still running, and billing: once all its jobs are finished it is an orphan


def job_states(
    executor_of: dict[str, Hashable], executors: dict[Hashable, Executor], markers: set[str]
) -> dict[str, JobState]:
    """Every job's state from its markers and its executor, for any backend."""
    finished = {job_id for job_id in executor_of if {done_marker(job_id), failed_marker(job_id)} & markers}
    busy = {key for job_id, key in executor_of.items() if job_id not in finished}
    states: dict[str, JobState] = {}
    for job_id, key in executor_of.items():
        executor = executors[key]
        if done_marker(job_id) in markers:
            states[job_id] = JobState.DONE_ORPHANS if executor.alive and key not in busy else JobState.DONE
        elif failed_marker(job_id) in markers:
            states[job_id] = JobState.FAILED
        else:
            states[job_id] = executor.state
    return states


def pid_executor(pid: int | None, alive_pids: set[int]) -> Executor:
    """A worker process: not started yet (no pid), alive, or dead without finishing its jobs."""
    if pid is None:
        return Executor(JobState.PENDING, False)
    return Executor(JobState.RUNNING, True) if pid in alive_pids else Executor(JobState.FAILED, False)
