"""The relaunch policy (musicsweep/sweep/relaunch.py `judge`, musicsweep/sweep/takers.py): a failed
clip is relaunched only when no live worker of the sweep holds or can take it. Liveness is read
with an injected clock, never by comparing a worker's clock with ours."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from musicsweep.config import Config, RecoveryConfig, StoreConfig
from musicsweep.layout import SweepDir
from musicsweep.manifest import JobEntry, Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.sightings import Sightings
from musicsweep.sweep.observe import Observation
from musicsweep.sweep.relaunch import judge
from musicsweep.worker.claims import Claim, Owner


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[Config, SweepDir]:
    config = Config(
        store=StoreConfig(str(tmp_path / "store")), sweeps_dir=tmp_path, recovery=RecoveryConfig(backoff_s=0)
    )
    return config, SweepDir(tmp_path, "s")


def verdict_of(config: Config, sweep: SweepDir, sightings: Sightings, per_host: bool = False):
    manifest = Manifest(sweep="s", jobs={"gone": JobEntry(worker=0, host="h1", launch="L1", attempts=1, launched_at=0)})
    states = {"gone": JobState.FAILED}
    return judge(Observation(dict(states)), manifest, config, sweep, states, time.time(), sightings, per_host)


def beat(config: Config, sweep: SweepDir, worker_clock_s: float, **fields: object) -> None:
    payload = {"time": worker_clock_s, "progress": worker_clock_s, "every_s": 2.0, "host": "h1", "pool": True}
    open_store(config.store).put_json(sweep.keys.heartbeat(1, "L1"), payload | fields)


@pytest.mark.parametrize("skew_s", [0.0, 3600.0, -3600.0])
def test_clock_a_failed_clip_is_left_to_a_live_worker_that_takes_from_the_sweep(sweep, skew_s: float) -> None:
    config, folder = sweep
    clock = Clock()
    sightings = Sightings(clock)
    beat(config, folder, time.time() + skew_s)  # its clock an hour off changes nothing
    verdict = verdict_of(config, folder, sightings)
    assert verdict.ready == [] and verdict.left == {"gone": "worker 1 of launch L1 on h1 can take it"}
    clock.now += 5.0
    beat(config, folder, time.time() + skew_s + 5)  # beating: still live
    assert verdict_of(config, folder, sightings).left
    clock.now += 7.0  # unchanged for more than three of its 2 s beats, as we saw it: it exited or died
    verdict = verdict_of(config, folder, sightings)
    assert verdict.ready == ["gone"] and verdict.left == {}


def test_a_worker_that_takes_no_clips_or_has_finished_takes_nothing(sweep) -> None:
    config, folder = sweep
    beat(config, folder, time.time(), pool=False)
    assert verdict_of(config, folder, Sightings()).ready == ["gone"]
    beat(config, folder, time.time())
    open_store(config.store).put_json(folder.keys.lifetime(1, "L1"), {"finished": True})
    assert verdict_of(config, folder, Sightings()).ready == ["gone"]


def test_a_store_per_host_leaves_a_clip_only_to_a_worker_on_its_host(sweep) -> None:
    config, folder = sweep
    beat(config, folder, time.time(), host="h2")
    assert verdict_of(config, folder, Sightings(), per_host=True).ready == ["gone"]
    assert verdict_of(config, folder, Sightings(), per_host=False).ready == []
    beat(config, folder, time.time(), host="h1")
    assert verdict_of(config, folder, Sightings(), per_host=True).ready == []


def test_a_clip_another_launch_holds_is_not_relaunched_until_released(sweep) -> None:
    config, folder = sweep
    store = open_store(config.store)
    holder = Claim(1, Owner("elsewhere", 7, "L2", 0), 0.0, renewals=3)
    store.put_bytes(folder.keys.claim("gone", 1), holder.to_bytes())
    verdict = verdict_of(config, folder, Sightings())
    assert verdict.left == {"gone": "its claim is held by worker 0 of launch L2 on elsewhere"}
    released = Claim(1, Owner("elsewhere", 7, "L2", 0), 0.0, renewals=4, released="stopped")
    store.put_bytes(folder.keys.claim("gone", 1), released.to_bytes())
    assert verdict_of(config, folder, Sightings()).ready == ["gone"]
