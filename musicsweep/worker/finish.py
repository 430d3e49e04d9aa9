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

from musicsweep.contract import WorkerEnv
from musicsweep.layout import StoreKeys
from musicsweep.store.base import Store
from musicsweep.worker.context import WorkerContext


def exit_reason(status: int) -> str:
    return f"worker exited with status {status} before this clip"


def mark_unfinished(store: Store, sweep: str, job_ids: list[str], reason: str, launch_id: str) -> list[str]:
    """One marker listing, then a `.failed` holding `reason` for each job without a marker; returns
    their ids. Only job ids are needed, so no spec is unpickled here."""
    if not job_ids:
        return []
    keys = StoreKeys(sweep)
    markers = set(store.list(keys.markers))
    marked = []
    for job_id in job_ids:
        if keys.done(job_id) not in markers and keys.failed(job_id, launch_id) not in markers:
            store.put_bytes(keys.failed(job_id, launch_id), f"{reason}\n".encode())
            marked.append(job_id)
    return marked


def main(argv: list[str]) -> int:
    status, specs = int(argv[0]), [Path(arg) for arg in argv[1:]]
    env = WorkerEnv.from_env(os.environ)
    context = WorkerContext.of(env)
    sweep = env.launch.sweep or context.work_dir.name
    job_ids = [spec.stem for spec in specs]
    marked = mark_unfinished(context.store, sweep, job_ids, exit_reason(status), context.launch_id)
    print(f"[musicsweep] {len(marked)} unfinished clip(s) marked failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
