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
from musicsweep.worker.claims import read_latest, unreleased_claim
from musicsweep.worker.context import WorkerContext


def exit_reason(status: int) -> str:
    return f"worker exited with status {status} before this clip"


def mark_unfinished(
    store: Store, sweep: str, job_ids: list[str], reason: str, launch_id: str, worker_id: int
) -> list[str]:
    """One marker listing, then a `.failed` holding `reason` for each job without a marker that no
    other worker is making (dynamic assignment: another machine may have taken it and hold its
    live claim); returns their ids. Only job ids are needed, so no spec is unpickled here."""
    if not job_ids:
        return []
    keys = StoreKeys(sweep)
    markers = set(store.list(keys.markers))
    marked = []
    for job_id in job_ids:
        if keys.done(job_id) in markers or keys.failed(job_id, launch_id) in markers:
            continue
        if held_by_another(store, keys, job_id, launch_id, worker_id):
            continue
        store.put_bytes(keys.failed(job_id, launch_id), f"{reason}\n".encode())
        marked.append(job_id)
    return marked


def held_by_another(store: Store, keys: StoreKeys, job_id: str, launch_id: str, worker_id: int) -> bool:
    """True when the job's current claim is unreleased and another worker's than (launch, worker)."""
    claim = unreleased_claim(read_latest(store, keys, job_id))
    return claim is not None and (claim.owner.launch, claim.owner.worker) != (launch_id, worker_id)


def main(argv: list[str]) -> int:
    status, specs = int(argv[0]), [Path(arg) for arg in argv[1:]]
    env = WorkerEnv.from_env(os.environ)
    context = WorkerContext.of(env)
    sweep = env.launch.sweep or context.work_dir.name
    job_ids = [spec.stem for spec in specs]
    marked = mark_unfinished(context.store, sweep, job_ids, exit_reason(status), context.launch_id, context.worker_id)
    print(f"[musicsweep] {len(marked)} unfinished clip(s) marked failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
