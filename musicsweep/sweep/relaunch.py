"""Bounded, backed-off relaunch of failed and lost jobs whose outputs are missing, and only those.

A job is relaunched at most `recovery.max_attempts` times in all, `backoff_s` × 2^(attempt-1)
after its latest launch; a `lost` job only once its lease has expired; a permanent failure (see
`musicsweep.failure`) never; a job whose launcher died before submitting it at once, since that
launch never ran it; a job whose spec in the sweep folder no longer matches its digest never (it
is reported once, the other jobs go on, and the sweep script run again writes it anew). Of the
jobs ready by those rules, those a live worker of the sweep holds or can take are left to it
(`sweep.takers`, the relaunch policy). `judge` sorts the jobs into ready, waiting, left and stuck,
so following can stop by itself once nothing can make progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from musicsweep.backends.base import Backend
from musicsweep.config import Config
from musicsweep.digests import DigestMismatch
from musicsweep.failure import permanent_reason
from musicsweep.job import Job
from musicsweep.layout import SweepDir
from musicsweep.manifest import Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.sightings import Sightings
from musicsweep.sweep.launch import launch
from musicsweep.sweep.lock import launch_lock
from musicsweep.sweep.observe import Observation
from musicsweep.sweep.plan import Plan, finished_in_store
from musicsweep.sweep.takers import left_to_live_workers


@dataclass
class Verdict:
    ready: list[str] = field(default_factory=list)  # relaunch now
    waiting: dict[str, float] = field(default_factory=dict)  # job -> epoch time it may be relaunched
    stuck: dict[str, str] = field(default_factory=dict)  # job -> why it will never be relaunched
    left: dict[str, str] = field(default_factory=dict)  # job -> the live worker that holds or can take it


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
    sightings: Sightings | None = None,
    per_host: bool = False,
) -> Verdict:
    """Which failed or lost jobs may be relaunched now, later, or never, and which are left to
    live workers (`per_host`: each host keeps its own store, so only a worker there can take them)."""
    recovery, store, verdict = config.recovery, open_store(config.store), Verdict()
    for job_id, state in sorted(states.items()):
        if state == JobState.LOST and not observation.lease_expired(job_id, now):
            verdict.waiting[job_id] = observation.lease_expires[job_id]
            continue
        if state not in (JobState.FAILED, JobState.LOST):
            continue
        if job_id in observation.never_started:
            verdict.ready.append(job_id)
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
    ready = {job_id: manifest.jobs[job_id] for job_id in verdict.ready}
    verdict.left = left_to_live_workers(store, sweep, ready, sightings or Sightings(), recovery.lease_s, per_host)
    verdict.ready = [job_id for job_id in verdict.ready if job_id not in verdict.left]
    return verdict


@dataclass
class Relaunched:
    started: list[str] = field(default_factory=list)  # the jobs launched
    refused: dict[str, str] = field(default_factory=dict)  # job -> why its spec was not loaded


def checked_specs(sweep: SweepDir, job_ids: list[str]) -> tuple[list[Job], dict[str, str]]:
    """The jobs whose spec matches the manifest's digest, and the others (job -> the one-line
    refusal): a spec swapped in the sweep folder holds back its own job only. Under the launch
    lock, the manifest and the spec files are one launch's: a launch rewrites both, and a spec read
    half-way through another relaunch was refused for the digest it had replaced."""
    jobs, refused = [], {}
    with launch_lock(sweep, "relaunch"):
        manifest = sweep.read_manifest()  # for the digests only: the caller's manifest decides what launches
        for job_id in job_ids:
            try:
                jobs.append(sweep.read_spec(job_id, manifest.jobs[job_id].spec_sha256))
            except DigestMismatch as error:
                refused[job_id] = str(error)
    return jobs, refused


def relaunch_jobs(
    config: Config, sweep: SweepDir, backend: Backend, job_ids: list[str], judged_by: Manifest
) -> Relaunched:
    """Resubmit `job_ids` whose WAV is not in the store and whose spec is still the one recorded
    (a refused spec is reported, and the sweep script writes it anew).

    `judged_by` is the manifest the caller judged them by. Under the launch lock, a launch recorded
    since then (another `--relaunch-failed`, a re-run) makes the launch look at each job again and
    drop what now runs or is done; a relaunch left with nothing records no launch. Reading the
    manifest afresh here instead would make a second relaunch look up to date and start the same
    jobs again."""
    if not job_ids:
        return Relaunched()
    candidates, refused = checked_specs(sweep, job_ids)
    finished = finished_in_store(open_store(config.store), candidates, sweep)
    jobs = [job for job in candidates if job.job_id not in finished]
    if not jobs:
        return Relaunched([], refused)
    everything, _ = checked_specs(sweep, list(judged_by.jobs))  # a refused one keeps its entry
    plan = Plan(sweep, everything, [], [], backend.shard(jobs), backend, store_url=config.store.url)
    plan.seen_launches = judged_by.launch_ids()
    return Relaunched([job.job_id for job in launch(plan, config, record_empty=False).to_run], refused)
