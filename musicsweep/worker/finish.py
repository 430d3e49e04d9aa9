"""After a worker has exited: mark each of its clips that has neither `.done` nor `.failed` as failed.

A machine that goes away with its worker (an EC2 instance shutting down, a RunPod pod terminating
itself) runs this first, so a killed worker's jobs read `failed`, with the reason, rather than
`lost` like those of a machine that vanished. `python -m musicsweep.worker.finish STATUS SPEC...`
reads the store and work folder from the worker's environment contract.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from musicsweep.job import Job
from musicsweep.layout import JobPaths, StoreKeys
from musicsweep.store.base import Store
from musicsweep.worker.context import WorkerContext
from musicsweep.worker.specs import load_specs


def exit_reason(status: int) -> str:
    return f"worker exited with status {status} before this clip"


def mark_unfinished(store: Store, jobs: list[Job], work_dir: Path, reason: str, launch_id: str) -> list[str]:
    """One marker listing, then a `.failed` holding `reason` for each job without a marker; returns their ids."""
    if not jobs:
        return []
    markers = set(store.list(StoreKeys(jobs[0].sweep).markers))
    marked = []
    for job in jobs:
        paths = JobPaths.of(job, work_dir)
        if paths.done_key not in markers and paths.failed_key(launch_id) not in markers:
            store.put_bytes(paths.failed_key(launch_id), f"{reason}\n".encode())
            marked.append(job.job_id)
    return marked


def main(argv: list[str]) -> int:
    status, specs = int(argv[0]), [Path(arg) for arg in argv[1:]]
    context = WorkerContext.from_env(dict(os.environ))
    marked = mark_unfinished(
        context.store, load_specs(specs).jobs, context.work_dir, exit_reason(status), context.launch_id
    )
    print(f"[musicsweep] {len(marked)} unfinished clip(s) marked failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
