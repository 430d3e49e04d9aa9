"""A launch's specs in the store, for hosts that fetch their work from there instead of from the
sweep folder (EC2 instances, Ray workers). The shard lists are in the store already
(`sweep.launch.write_shard_lists`); the spec list names every spec by its digest, so a worker
checks each spec before it unpickles any (`worker.specs`)."""

from __future__ import annotations

from musicsweep.job import Job
from musicsweep.layout import JobPaths, SweepDir
from musicsweep.store.base import Store


def put_specs(store: Store, sweep: SweepDir, jobs: list[Job], specs_sha256: str) -> None:
    """Upload the launch's spec list (when the environment vouches for one) and each job's spec."""
    if specs_sha256:
        store.put_file(sweep.keys.spec_list(specs_sha256), sweep.spec_list(specs_sha256))
    for job in jobs:
        store.put_file(sweep.keys.spec(job.job_id), sweep.job(job).spec)


def fetch_shard(store: Store, sweep: SweepDir, launch_id: str, worker_id: int, specs_sha256: str) -> list[str]:
    """Download one worker's specs and the launch's spec list into `sweep` (a host's work folder),
    unread; returns the shard's job ids."""
    job_ids = store.get_json(sweep.keys.shard(launch_id, worker_id))["jobs"]
    if specs_sha256:
        store.get_file(sweep.keys.spec_list(specs_sha256), sweep.spec_list(specs_sha256))
    for job_id in job_ids:
        store.get_file(sweep.keys.spec(job_id), JobPaths(sweep.root, sweep.name, job_id, "").spec)
    return job_ids
