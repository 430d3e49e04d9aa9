"""One read-only look at a sweep: the backend's poll, refined by what the store and manifest know.

`Backend.poll` gives each job's state from markers and executors. On top of it, for any backend:
- a job whose latest launch failed to start its worker reads `failed` with the launch's error;
- a job whose latest launch was never submitted (`submitted: false`: its launcher died between the
  manifest and the backend's answer, so the launch lock is free) and whose worker no poll can see
  reads `failed` at once, in `never_started`: a re-run launches it, `--relaunch-failed` without
  backoff, while a worker that launch did start is seen running and never started again;
- a worker that has not started within `recovery.start_timeout_minutes` makes its jobs `failed`;
- a running job whose worker reports no progress for `stall_after_s` (`recovery.stall_after_minutes`,
  or by default a few times what the launch's estimate expects) reads `stalled`;
- a `failed` or `lost` job (no launch error) whose current claim another worker holds, fresh and
  unreleased, reads `running` ("taken by ..."): with dynamic assignment a worker that exits leaves
  the clips others took from its shard to them, and a follow must wait for those, not call them failed;
- a `lost` job gets its lease expiry: a lease after its claim in the store (else its worker's
  heartbeat, else when it was first seen lost) was last renewed. It stays `lost` (never
  relaunched) until then; a released claim expires at once.
No two hosts' clocks are compared. How long ago a heartbeat or claim was written is the longer of
how long this observer itself saw it unchanged (`Sightings`, on its monotonic clock, kept across
a follow's rounds) and its age by the store's own clock (`Store.age_s`: S3's `Date` minus
`Last-Modified`, a folder's mtime); a worker's quiet time is the difference of two times its own
clock wrote (heartbeat `time` minus `progress`) plus that age.
Nothing is written anywhere: a dry run, `status` and following all call this.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field

from musicsweep.backends.base import Backend
from musicsweep.config import Config, RecoveryConfig
from musicsweep.layout import StoreKeys, SweepDir
from musicsweep.manifest import JobEntry, Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.sightings import Sightings
from musicsweep.sweep.lock import held_elsewhere
from musicsweep.worker.claims import Seen, dead_on_host, latest_claims, read_latest, read_seen, unreleased_claim

STALL_FACTOR = 4.0  # expected quiet stretches a worker may go without progress
STALL_FLOOR_S = 300.0
STALL_FALLBACK_S = 1200.0  # a launch recorded without an estimate


def stall_after_s(recovery: RecoveryConfig, manifest: Manifest, launch_id: str | None, worker: int | None) -> float:
    """How long a worker whose heartbeat is fresh may go without progress before it reads `stalled`.

    `recovery.stall_after_minutes` wins when set. Otherwise: STALL_FACTOR times the longest quiet
    stretch the launch's estimate expects of that worker (setup and model load, then its longest
    batch; a long clip reports progress per window, so a batch bounds it), never under 5 minutes.
    A fixed figure would either call a 5-minute clip on a slow GPU stalled or notice a hung
    2-second batch only after many paid minutes.
    """
    if recovery.stall_after_minutes is not None:
        return recovery.stall_after_minutes * 60
    record = manifest.launch_record(launch_id)
    workers = (record.estimate or {}).get("workers", []) if record else []
    mine = next((entry for entry in workers if entry.get("worker_id") == worker), None)
    if mine is None:
        return STALL_FALLBACK_S
    parts = mine.get("parts", {})
    quiet_s = parts.get("setup", 0.0) + parts.get("model_load", 0.0) + mine.get("longest_batch_s", 0.0)
    return max(STALL_FLOOR_S, STALL_FACTOR * quiet_s)


@dataclass
class Observation:
    states: dict[str, JobState]
    reasons: dict[str, str] = field(default_factory=dict)  # why a job is failed, stalled or lost
    lease_expires: dict[str, float] = field(default_factory=dict)  # lost jobs: when they may be taken over
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> why
    never_started: set[str] = field(default_factory=set)  # failed: their launcher died before submitting them

    def lease_expired(self, job_id: str, now: float) -> bool:
        return self.lease_expires.get(job_id, 0.0) <= now


def dead_launches(sweep: SweepDir, manifest: Manifest) -> set[str]:
    """Launches never submitted whose launcher is gone: none holds the sweep's launch lock."""
    unsubmitted = {record.id for record in manifest.launches if not record.submitted}
    return unsubmitted if unsubmitted and not held_elsewhere(sweep) else set()


def unseen(state: JobState, host: str | None, unreachable: dict[str, str], pending_is_seen: bool = False) -> bool:
    """No poll sees this job's worker: none started (pending, where the backend's pending is not
    an executor it found waiting: `Backend.pending_is_seen`), it died, or the backend found none
    (lost on a reachable host, e.g. no instance of that launch and worker on EC2)."""
    if state == JobState.PENDING:
        return not pending_is_seen
    return state == JobState.FAILED or (state == JobState.LOST and host not in unreachable)


def read_heartbeat(store: Store, sweep: str, launch_id: str | None, worker: int | None) -> dict | None:
    if launch_id is None or worker is None:
        return None
    try:
        return store.get_json(StoreKeys(sweep).heartbeat(worker, launch_id))
    except Exception:  # none yet (a missing key raises differently per store), or half-visible
        return None


def heartbeat_age_s(store: Store, sweep: str, launch_id: str, worker: int, beat: dict, sightings: Sightings) -> float:
    """How long ago this heartbeat was written, never by comparing the worker's clock with ours."""
    key = StoreKeys(sweep).heartbeat(worker, launch_id)
    return sightings.age_s(store, key, json.dumps(beat, sort_keys=True).encode())


def observe(
    sweep: SweepDir,
    manifest: Manifest,
    backend: Backend,
    config: Config,
    lost_since: dict[str, float] | None = None,
    now: float | None = None,
    sightings: Sightings | None = None,
) -> Observation:
    """Every job's state and why, from one poll plus the store's heartbeats and claims (read-only).

    `sightings` carries what earlier rounds saw (a one-off look starts afresh); `now` is this
    machine's clock, compared only with times this machine wrote (launches, first lost)."""
    now = time.time() if now is None else now
    sightings = sightings or Sightings()
    observation = Observation(backend.poll(sweep, manifest), unreachable=dict(backend.unreachable_why))
    recovery = config.recovery
    store = open_store(config.store)
    beats: dict[tuple, dict | None] = {}

    def beat_of(job_id: str) -> dict | None:
        entry = manifest.jobs[job_id]
        key = (entry.launch, entry.worker)
        if key not in beats:
            beats[key] = read_heartbeat(store, sweep.name, entry.launch, entry.worker)
        return beats[key]

    quiet: dict[tuple, float | None] = {}

    def quiet_s_of(job_id: str) -> float | None:
        """How long the job's worker has gone without progress: one look per worker, not per job."""
        entry = manifest.jobs[job_id]
        key = (entry.launch, entry.worker)
        if key not in quiet:
            beat = beat_of(job_id)
            quiet[key] = None
            if beat is not None and "progress" in beat and entry.launch is not None and entry.worker is not None:
                age_s = heartbeat_age_s(store, sweep.name, entry.launch, entry.worker, beat, sightings)
                quiet[key] = float(beat.get("time", beat["progress"])) - float(beat["progress"]) + age_s
        return quiet[key]

    dead = dead_launches(sweep, manifest)
    taken = taken_over(store, sweep, manifest, observation, sightings, recovery.lease_s)
    for job_id, state in observation.states.items():
        entry = manifest.jobs[job_id]
        if entry.error and state in (JobState.PENDING, JobState.LOST, JobState.FAILED):
            observation.states[job_id], observation.reasons[job_id] = JobState.FAILED, entry.error
        elif job_id in taken:
            observation.states[job_id], observation.reasons[job_id] = JobState.RUNNING, f"taken by {taken[job_id]}"
        elif entry.launch in dead and unseen(state, entry.host, observation.unreachable, backend.pending_is_seen):
            observation.states[job_id] = JobState.FAILED
            observation.reasons[job_id] = f"launch {entry.launch} ended before it started this job's worker"
            observation.never_started.add(job_id)
        elif state == JobState.PENDING and not backend.queues and entry.launched_at is not None:
            if now - entry.launched_at > recovery.start_timeout_minutes * 60 and beat_of(job_id) is None:
                observation.states[job_id] = JobState.FAILED
                observation.reasons[job_id] = f"worker never started within {recovery.start_timeout_minutes:g} min"
        elif state == JobState.RUNNING:
            quiet_s = quiet_s_of(job_id)
            limit_s = stall_after_s(recovery, manifest, entry.launch, entry.worker)
            if quiet_s is not None and quiet_s > limit_s:
                since = time.strftime("%H:%M:%S", time.localtime(now - quiet_s))
                observation.states[job_id] = JobState.STALLED
                limit = f"{limit_s / 60:.0f} min"
                observation.reasons[job_id] = f"no clip finished since {since} though its heartbeat is fresh ({limit})"
        elif state == JobState.LOST:
            expires = lease_expiry(store, sweep, manifest, job_id, recovery, sightings, now)
            if expires is None:  # nothing in the store: a lease after we first saw it lost
                expires = (lost_since or {}).get(job_id, entry.launched_at or now) + recovery.lease_s
            observation.lease_expires[job_id] = expires
    return observation


def lease_expiry(
    store: Store,
    sweep: SweepDir,
    manifest: Manifest,
    job_id: str,
    recovery: RecoveryConfig,
    sightings: Sightings,
    now: float,
) -> float | None:
    """When (on this machine's clock) a lost job may be taken over: a lease after its claim, else its
    worker's heartbeat, was last renewed as far as we can tell; at once if released; None when
    neither is there."""
    entry = manifest.jobs[job_id]
    seen = read_latest(store, sweep.keys, job_id)
    if seen is not None and (seen.claim is None or seen.claim.owner.launch == entry.launch):
        if seen.claim is not None and seen.claim.released is not None:
            return now
        return now - sightings.age_s(store, seen.key, seen.data) + recovery.lease_s
    beat = read_heartbeat(store, sweep.name, entry.launch, entry.worker)
    if beat is not None and entry.launch is not None and entry.worker is not None:
        return now - heartbeat_age_s(store, sweep.name, entry.launch, entry.worker, beat, sightings) + recovery.lease_s
    return None


def taken_over(
    store: Store, sweep: SweepDir, manifest: Manifest, observation: Observation, sightings: Sightings, lease_s: float
) -> dict[str, str]:
    """Failed or lost jobs whose current claim another worker holds fresh: job -> that worker.

    One listing of every claim, then one read per such job that was ever claimed."""
    candidates = {
        job_id
        for job_id, state in observation.states.items()
        if state in (JobState.FAILED, JobState.LOST) and not manifest.jobs[job_id].error
    }
    if not candidates:
        return {}
    taken = {}
    for job_id, key in latest_claims(store, sweep.keys).items():
        if job_id not in candidates:
            continue
        holder = fresh_holder(store, read_seen(store, key), manifest.jobs[job_id], sightings, lease_s)
        if holder is not None:
            taken[job_id] = holder
    return taken


def fresh_holder(store: Store, seen: Seen | None, entry: JobEntry, sightings: Sightings, lease_s: float) -> str | None:
    """Who holds the claim `seen`, described, when it is not the job's own worker and is fresh:
    unreleased, renewed within a lease, its owner not dead on this host. Else None."""
    claim = unreleased_claim(seen)
    if seen is None or claim is None:
        return None
    owner = claim.owner
    if (owner.launch, owner.worker) == (entry.launch, entry.worker) or dead_on_host(owner, socket.gethostname()):
        return None
    if sightings.age_s(store, seen.key, seen.data) >= lease_s:
        return None
    return f"worker {owner.worker} of launch {owner.launch} on {owner.host}"
