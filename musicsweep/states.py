"""Job states and the one rule that derives them, shared by every backend.

Markers decide first. A job whose `.done` is present while its executor is alive is `done` if the
executor still has unfinished jobs, and `done_orphans` once every one of them is finished. A
`.failed` counts only when it is the job's latest attempt's (`{job_id}.{launch}.failed`): an older
attempt's failure never hides a newer attempt that is still generating. A job with no marker takes
its executor's state (see docs/architecture.md, "Job states").
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
    STALLED = "stalled"  # heartbeat fresh, but no clip finished for `stall_after_minutes`
    PENDING = "pending"


FINISHED_STATES = (JobState.DONE, JobState.FAILED)


@dataclass(frozen=True)
class Executor:
    """What runs a group of jobs (a worker process, a SLURM task, an instance) as one poll saw it."""

    state: JobState  # the state of its unfinished jobs: PENDING, RUNNING, FAILED or LOST
    alive: bool  # still running, and billing: once all its jobs are finished it is an orphan


def marker_state(job_id: str, launch_id: str | None, markers: set[str]) -> JobState | None:
    """DONE or FAILED (of the latest attempt, `launch_id`) from the markers alone, else None."""
    if done_marker(job_id) in markers:
        return JobState.DONE
    if failed_marker(job_id, launch_id) in markers:
        return JobState.FAILED
    return None


def job_states(
    executor_of: dict[str, Hashable],
    executors: dict[Hashable, Executor],
    markers: set[str],
    launch_of: dict[str, str | None],
) -> dict[str, JobState]:
    """Every job's state from its markers and its executor, for any backend.

    `launch_of` names each job's latest attempt (the manifest's `launch`)."""
    marked = {job_id: marker_state(job_id, launch_of.get(job_id), markers) for job_id in executor_of}
    busy = {key for job_id, key in executor_of.items() if marked[job_id] is None}
    states: dict[str, JobState] = {}
    for job_id, key in executor_of.items():
        executor = executors[key]
        if marked[job_id] == JobState.DONE:
            states[job_id] = JobState.DONE_ORPHANS if executor.alive and key not in busy else JobState.DONE
        else:
            states[job_id] = marked[job_id] or executor.state
    return states


def pid_executor(pid: int | None, alive_pids: set[int]) -> Executor:
    """A worker process: not started yet (no pid), alive, or dead without finishing its jobs."""
    if pid is None:
        return Executor(JobState.PENDING, False)
    return Executor(JobState.RUNNING, True) if pid in alive_pids else Executor(JobState.FAILED, False)
