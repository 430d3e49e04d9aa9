"""What squeue says about a sweep's array tasks, and what that means for their jobs."""

from __future__ import annotations

import subprocess

from musicsweep.states import Executor, JobState

# squeue states (`%T`) that mean a task is waiting, or holds (or is releasing) its allocation.
QUEUED_STATES = {
    "PENDING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "CONFIGURING",
    "PREEMPTED",
    "RESV_DEL_HOLD",
}
ACTIVE_STATES = {"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"}


def squeue_command(array_ids: list[str]) -> list[str]:
    """One squeue call for every task of every array of the sweep, in any state."""
    return ["squeue", "--noheader", "--array", "--states=all", "--jobs", ",".join(array_ids), "--format=%i %T"]


def parse_squeue(result: subprocess.CompletedProcess) -> dict[str, str] | None:
    """`ARRAY_TASK` -> state; an array that aged out of the controller is simply absent."""
    if result.returncode != 0:
        return {} if "Invalid job id" in result.stderr else None
    return dict(line.split()[:2] for line in result.stdout.splitlines() if len(line.split()) >= 2)


def named_arrays_command(names: list[str]) -> list[str]:
    """One squeue call for the arrays of these job names (each launch's own: `array_name`), in any state."""
    return ["squeue", "--noheader", "--states=all", "--name", ",".join(names), "--format=%F %j"]


def parse_named_arrays(result: subprocess.CompletedProcess) -> dict[str, str] | None:
    """Job name -> its array job id; None when squeue did not answer."""
    if result.returncode != 0:
        return None
    return {
        fields[1]: fields[0]
        for fields in (line.split(maxsplit=1) for line in result.stdout.splitlines())
        if len(fields) == 2
    }


def task_executor(queue: dict[str, str] | None, task: str) -> Executor:
    """An array task as squeue saw it; no answer from squeue makes its jobs lost."""
    if queue is None:
        return Executor(JobState.LOST, False)
    state = queue.get(task)
    if state in QUEUED_STATES:
        return Executor(JobState.PENDING, False)
    if state in ACTIVE_STATES:
        return Executor(JobState.RUNNING, True)
    return Executor(JobState.FAILED, False)


def one_line(text: str) -> str:
    """A command's error output as one line, so a user sees the cluster's own words unmangled."""
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip()) or "no message"
