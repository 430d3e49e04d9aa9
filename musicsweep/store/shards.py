"""A launch's work in the store, for hosts that fetch it from there instead of from the sweep
folder (EC2 instances, Ray workers): each job's spec and each worker's list of job ids."""

from __future__ import annotations

from musicsweep.job import Job
from musicsweep.layout import JobPaths, SweepDir
from musicsweep.store.base import Store


def put_shard(store: Store, sweep: SweepDir, launch_id: str, worker_id: int, jobs: list[Job]) -> None:
    """Upload the specs of one worker's jobs (written in the sweep folder at launch), then its list."""
    for job in jobs:
        store.put_file(sweep.keys.spec(job.job_id), sweep.job(job).spec)
    store.put_json(sweep.keys.shard(launch_id, worker_id), {"jobs": [job.job_id for job in jobs]})


def fetch_shard(store: Store, sweep: SweepDir, launch_id: str, worker_id: int) -> list[Job]:
    """Download one worker's specs into `sweep` (a host's work folder); returns its jobs."""
    job_ids = store.get_json(sweep.keys.shard(launch_id, worker_id))["jobs"]
    for job_id in job_ids:
        store.get_file(sweep.keys.spec(job_id), JobPaths(sweep.root, sweep.name, job_id, "").spec)
    return [sweep.read_spec(job_id) for job_id in job_ids]
