"""Relaunch failed and lost jobs whose outputs are missing, and only those."""

from __future__ import annotations

from musicsweep.backends.base import Backend
from musicsweep.config import Config
from musicsweep.layout import SweepDir
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.sweep.plan import Plan, finished_in_store, launch


def relaunch_failed(config: Config, sweep: SweepDir, backend: Backend, states: dict[str, str]) -> list[str]:
    """Resubmit jobs in `failed`/`lost` state whose WAV is not in the store; returns their ids."""
    candidates = [
        sweep.read_spec(job_id) for job_id, state in sorted(states.items()) if state in (JobState.FAILED, JobState.LOST)
    ]
    if not candidates:
        return []
    store = open_store(config.store)
    finished = finished_in_store(store, candidates, sweep)
    jobs = [job for job in candidates if job.job_id not in finished]
    if not jobs:
        return []
    for job in jobs:
        store.delete(sweep.job(job).failed_key)
    manifest = sweep.read_manifest()
    everything = [sweep.read_spec(job_id) for job_id in manifest.jobs]
    plan = Plan(sweep, everything, [], [], backend.shard(jobs), backend, store_url=config.store.url)
    launch(plan, config)
    return [job.job_id for job in jobs]
