"""Bounded, backed-off relaunch of failed and lost jobs whose outputs are missing, and only those.

A job is relaunched at most `recovery.max_attempts` times in all, `backoff_s` × 2^(attempt-1)
after its latest launch; a `lost` job only once its lease has expired; a permanent failure (see
`musicsweep.failure`) never. `judge` sorts the jobs into ready, waiting and stuck, so following
can stop by itself once nothing can make progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from musicsweep.backends.base import Backend
from musicsweep.config import Config
from musicsweep.failure import permanent_reason
from musicsweep.layout import SweepDir
from musicsweep.manifest import Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.sweep.launch import launch
from musicsweep.sweep.observe import Observation
from musicsweep.sweep.plan import Plan, finished_in_store


@dataclass
class Verdict:
    ready: list[str] = field(default_factory=list)  # relaunch now
    waiting: dict[str, float] = field(default_factory=dict)  # job -> epoch time it may be relaunched
    stuck: dict[str, str] = field(default_factory=dict)  # job -> why it will never be relaunched


def marker_permanent_reason(store: Store, sweep: SweepDir, job_id: str, launch_id: str | None) -> str | None:
    try:
        text = store.get_bytes(sweep.keys.failed(job_id, launch_id)).decode(errors="replace")
    except Exception:  # no marker (a dead worker, a launch error): worth a retry
        return None
    return permanent_reason(text)


def judge(
    observation: Observation,
    manifest: Manifest,
    config: Config,
    sweep: SweepDir,
    states: dict[str, JobState],
    now: float,
) -> Verdict:
    """Which failed or lost jobs may be relaunched now, later, or never."""
    recovery, store, verdict = config.recovery, open_store(config.store), Verdict()
    for job_id, state in sorted(states.items()):
        if state == JobState.LOST and not observation.lease_expired(job_id, now):
            verdict.waiting[job_id] = observation.lease_expires[job_id]
            continue
        if state not in (JobState.FAILED, JobState.LOST):
            continue
        entry = manifest.jobs[job_id]
        reason = marker_permanent_reason(store, sweep, job_id, entry.launch) if state == JobState.FAILED else None
        if reason is not None:
            verdict.stuck[job_id] = f"permanent failure, not relaunched: {reason}"
        elif entry.attempts >= recovery.max_attempts:
            verdict.stuck[job_id] = (
                f"failed {entry.attempts} attempt(s) (recovery.max_attempts={recovery.max_attempts})"
            )
        else:
            due = (entry.launched_at or 0.0) + recovery.backoff_s * 2 ** max(0, entry.attempts - 1)
            if now < due:
                verdict.waiting[job_id] = due
            else:
                verdict.ready.append(job_id)
    return verdict


def relaunch_jobs(config: Config, sweep: SweepDir, backend: Backend, job_ids: list[str]) -> list[str]:
    """Resubmit `job_ids` whose WAV is not in the store; returns their ids."""
    if not job_ids:
        return []
    manifest = sweep.read_manifest()
    candidates = [sweep.read_spec(job_id, manifest.jobs[job_id].spec_sha256) for job_id in job_ids]
    finished = finished_in_store(open_store(config.store), candidates, sweep)
    jobs = [job for job in candidates if job.job_id not in finished]
    if not jobs:
        return []
    everything = [sweep.read_spec(job_id, entry.spec_sha256) for job_id, entry in manifest.jobs.items()]
    plan = Plan(sweep, everything, [], [], backend.shard(jobs), backend, store_url=config.store.url)
    plan.seen_launches = manifest.launch_ids()
    return [job.job_id for job in launch(plan, config).to_run]
