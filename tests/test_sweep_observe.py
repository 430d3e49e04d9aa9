"""What a poll makes of a sweep (musicsweep/sweep/observe.py): stalled, lost, never started or
failed launches, and the stall threshold."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicsweep.backends.base import Backend
from musicsweep.config import Config, RecoveryConfig, StoreConfig
from musicsweep.layout import SweepDir
from musicsweep.manifest import JobEntry, LaunchRecord, Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.sightings import Sightings
from musicsweep.sweep.observe import observe, stall_after_s
from musicsweep.sweep.relaunch import judge
from musicsweep.worker.claims import Claim, Owner


class FixedBackend(Backend):
    """A backend whose poll says what the test wants."""

    name = "fixed"

    def __init__(self, config: Config, states: dict[str, JobState]) -> None:
        super().__init__(config)
        self.states = states

    def poll(self, sweep, manifest):
        return dict(self.states)

    shard = submit = kill_orphans = fetch = cancel = None  # type: ignore[assignment]


def test_observe_finds_stalled_lost_never_started_and_failed_launches(tmp_path: Path) -> None:
    recovery = RecoveryConfig(lease_s=60, stall_after_minutes=1, start_timeout_minutes=1)
    config = Config(store=StoreConfig(str(tmp_path)), sweeps_dir=tmp_path, recovery=recovery)
    sweep = SweepDir(tmp_path, "s")
    now = time.time()
    entries = {
        "stalled": JobEntry(worker=0, launch="L1", launched_at=now - 600),
        "busy": JobEntry(worker=1, launch="L1", launched_at=now - 600),
        "lost": JobEntry(worker=2, launch="L1", launched_at=now - 600),
        "never": JobEntry(worker=3, launch="L1", launched_at=now - 120),
        "broken": JobEntry(worker=4, launch="L1", launched_at=now, error="launch L1 failed: setup failed"),
    }
    store = open_store(config.store)
    store.put_json(sweep.keys.heartbeat(0, "L1"), {"time": now, "progress": now - 300})
    store.put_json(sweep.keys.heartbeat(1, "L1"), {"time": now, "progress": now - 10})
    store.put_json(sweep.keys.heartbeat(2, "L1"), {"time": now - 30, "progress": now - 30})
    polled = {"stalled": JobState.RUNNING, "busy": JobState.RUNNING, "lost": JobState.LOST}
    backend = FixedBackend(config, polled | {"never": JobState.PENDING, "broken": JobState.PENDING})
    seen = observe(sweep, Manifest(sweep="s", jobs=entries), backend, config, now=now)
    assert seen.states == {
        "stalled": JobState.STALLED,
        "busy": JobState.RUNNING,
        "lost": JobState.LOST,
        "never": JobState.FAILED,
        "broken": JobState.FAILED,
    }
    # written just now by the store's clock, whatever time the worker's clock wrote in it: a lease from now
    assert seen.lease_expires["lost"] == pytest.approx(now + 60, abs=5)
    assert not seen.lease_expired("lost", now + 30) and seen.lease_expired("lost", now + 66)
    assert seen.reasons["never"] == "worker never started within 1 min"
    assert seen.reasons["broken"] == "launch L1 failed: setup failed"


def test_stall_threshold_follows_the_launch_estimate_unless_set() -> None:
    manifest = Manifest(launches=[])
    estimate = {"workers": [{"worker_id": 0, "parts": {"setup": 10.0, "model_load": 20.0}, "longest_batch_s": 120.0}]}
    manifest.launches.append(LaunchRecord("L1", 0.0, 4, estimate=estimate))
    assert stall_after_s(RecoveryConfig(), manifest, "L1", 0) == 4 * 150.0
    short = {"workers": [{"worker_id": 0, "parts": {"setup": 1.0}, "longest_batch_s": 2.0}]}
    manifest.launches.append(LaunchRecord("L2", 0.0, 4, estimate=short))
    assert stall_after_s(RecoveryConfig(), manifest, "L2", 0) == 300.0  # never under 5 minutes
    assert stall_after_s(RecoveryConfig(), manifest, "L1", 7) == 1200.0  # no estimate for that worker
    assert stall_after_s(RecoveryConfig(stall_after_minutes=2), manifest, "L1", 0) == 120.0


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("skew_s", [3600.0, -3600.0])
def test_clock_a_worker_an_hour_off_reads_by_what_this_observer_saw(tmp_path: Path, skew_s: float) -> None:
    """Heartbeats and claims written by a worker whose clock is an hour off: a renewed one reads
    fresh and a lease runs from when this observer first saw the last renewal, never from the
    times the worker wrote."""
    recovery = RecoveryConfig(lease_s=60, stall_after_minutes=1)
    config = Config(store=StoreConfig(str(tmp_path)), sweeps_dir=tmp_path, recovery=recovery)
    sweep, store, now = SweepDir(tmp_path, "s"), open_store(config.store), time.time()
    entries = {"busy": JobEntry(worker=0, launch="L1", launched_at=now), "lost": JobEntry(worker=1, launch="L1")}
    manifest = Manifest(sweep="s", jobs=entries)
    backend = FixedBackend(config, {"busy": JobState.RUNNING, "lost": JobState.LOST})
    worker_now = now + skew_s
    claim = Claim(0, Owner("far", 1, "L1", 1), worker_now + 60, renewals=7)
    store.put_bytes(sweep.keys.claim("lost", 0), claim.to_bytes())
    clock = Clock()
    sightings = Sightings(clock)
    for beat in range(3):  # the busy worker beats every 20 s with progress each time
        store.put_json(sweep.keys.heartbeat(0, "L1"), {"time": worker_now + beat, "progress": worker_now + beat})
        seen = observe(sweep, manifest, backend, config, now=now, sightings=sightings)
        assert seen.states["busy"] == JobState.RUNNING
        assert seen.lease_expires["lost"] == pytest.approx(now + 60 - 20 * beat, abs=5)  # from our first sight
        clock.now += 20
    clock.now += 60  # the claim unrenewed for 120 s of ours, the busy heartbeat unchanged for 80 s (limit 60)
    seen = observe(sweep, manifest, backend, config, now=now, sightings=sightings)
    assert seen.lease_expired("lost", now) and seen.states["busy"] == JobState.STALLED


@pytest.mark.parametrize("kind", ["folder", pytest.param("s3", marks=pytest.mark.e2e)])
def test_clock_the_store_tells_an_object_age_by_its_own_clock(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    if kind == "s3":
        bucket = request.getfixturevalue("moto_bucket")
        store = open_store(StoreConfig(bucket.url, endpoint_url=bucket.server.endpoint_url, region="us-east-1"))
    else:
        store = open_store(StoreConfig(str(tmp_path / "store")))
    store.put_json("s/workers/beat", {"time": 0})
    age = store.age_s("s/workers/beat")
    assert age is not None and 0 <= age < 30
    assert store.age_s("s/workers/missing") is None


def test_a_launch_never_submitted_reads_dead_once_its_launcher_is_gone(tmp_path: Path) -> None:
    """`submitted: false` and the launch lock held: the launcher is still submitting, its jobs are
    pending. The lock free (the kernel dropped it with the killed launcher): what no poll sees
    reads failed and is relaunched at once, while a worker the launch did start still runs."""
    config = Config(store=StoreConfig(str(tmp_path)), sweeps_dir=tmp_path, recovery=RecoveryConfig(backoff_s=600))
    sweep = SweepDir(tmp_path, "s")
    now = time.time()
    entries = {
        name: JobEntry(worker=index, launch="L1", attempts=1, launched_at=now) for index, name in enumerate("ab")
    }
    manifest = Manifest(sweep="s", jobs=entries, launches=[LaunchRecord("L1", now, 2, submitted=False)])
    backend = FixedBackend(config, {"a": JobState.PENDING, "b": JobState.RUNNING})
    sweep.root.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(sweep.launch_lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert observe(sweep, manifest, backend, config, now=now).states == {"a": "pending", "b": "running"}
    finally:
        holder.kill()
        holder.wait()
    seen = observe(sweep, manifest, backend, config, now=now)
    assert seen.states == {"a": JobState.FAILED, "b": JobState.RUNNING} and seen.never_started == {"a"}
    assert seen.reasons["a"] == "launch L1 ended before it started this job's worker"
    assert judge(seen, manifest, config, sweep, seen.states, now).ready == ["a"]  # no backoff: it never ran


def test_a_dead_launch_s_task_still_queued_is_never_started_again(tmp_path: Path) -> None:
    """A launcher killed after sbatch answered: the poll found its array, its task waiting in the
    queue. Pending there is a task SLURM will run (`Backend.pending_is_seen`), not a worker never
    started: nothing relaunches it (once, a re-run started a second array beside it)."""
    config = Config(store=StoreConfig(str(tmp_path)), sweeps_dir=tmp_path)
    sweep = SweepDir(tmp_path, "s")
    sweep.root.mkdir(parents=True)
    now = time.time()
    entries = {"a": JobEntry(worker=0, launch="L1", attempts=1, launched_at=now)}
    manifest = Manifest(sweep="s", jobs=entries, launches=[LaunchRecord("L1", now, 1, submitted=False)])
    queued = FixedBackend(config, {"a": JobState.PENDING})
    queued.pending_is_seen = True
    seen = observe(sweep, manifest, queued, config, now=now)
    assert seen.states == {"a": JobState.PENDING} and seen.never_started == set()
    unseen = observe(sweep, manifest, FixedBackend(config, {"a": JobState.PENDING}), config, now=now)
    assert unseen.states == {"a": JobState.FAILED} and unseen.never_started == {"a"}


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_clip_another_worker_took_reads_running_until_that_claim_is_released(tmp_path: Path) -> None:
    """Dynamic assignment: worker 1 exited (its poll says failed, or lost once its host is gone) while
    worker 0 makes the clip it took from worker 1's shard. That is running, not a failure to relaunch;
    released, or still held by the job's own worker, it is what the poll says."""
    config = Config(store=StoreConfig(str(tmp_path)), sweeps_dir=tmp_path, recovery=RecoveryConfig(lease_s=60))
    sweep, store, now = SweepDir(tmp_path, "s"), open_store(config.store), time.time()
    entries = {name: JobEntry(worker=1, launch="L1", launched_at=now) for name in ("taken", "gone", "own", "freed")}
    manifest = Manifest(sweep="s", jobs=entries)
    polled = {"taken": JobState.FAILED, "gone": JobState.LOST, "own": JobState.FAILED, "freed": JobState.FAILED}
    taker, own = Owner("far", 7, "L1", 0), Owner("far", 8, "L1", 1)
    store.put_bytes(sweep.keys.claim("taken", 0), Claim(0, own, now).to_bytes())
    store.put_bytes(sweep.keys.claim("taken", 1), Claim(1, taker, now).to_bytes())  # the newest generation wins
    store.put_bytes(sweep.keys.claim("gone", 0), Claim(0, taker, now).to_bytes())
    store.put_bytes(sweep.keys.claim("own", 0), Claim(0, own, now).to_bytes())
    store.put_bytes(sweep.keys.claim("freed", 0), Claim(0, taker, now, released="stopped").to_bytes())
    seen = observe(sweep, manifest, FixedBackend(config, polled), config, now=now)
    assert seen.states == {
        "taken": JobState.RUNNING,
        "gone": JobState.RUNNING,
        "own": JobState.FAILED,
        "freed": JobState.FAILED,
    }
    assert seen.reasons["taken"] == "taken by worker 0 of launch L1 on far"
