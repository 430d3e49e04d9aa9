"""What a poll makes of a sweep (musicsweep/sweep/observe.py): stalled, lost, never started or
failed launches, and the stall threshold."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from musicsweep.backends.base import Backend
from musicsweep.config import Config, RecoveryConfig, StoreConfig
from musicsweep.layout import SweepDir
from musicsweep.manifest import JobEntry, LaunchRecord, Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.sweep.observe import observe, stall_after_s


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
    assert seen.lease_expires["lost"] == pytest.approx(now + 30)  # last heartbeat + lease
    assert not seen.lease_expired("lost", now) and seen.lease_expired("lost", now + 31)
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
