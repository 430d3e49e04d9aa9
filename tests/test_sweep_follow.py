"""`act_on`'s orphan rule with dynamic assignment: a worker whose own shard is done but which still
takes clips of the sweep's other shards (its heartbeat says `pool`) is no orphan, and is not killed."""

from __future__ import annotations

import time
from pathlib import Path

from musicsweep.config import StoreConfig
from musicsweep.layout import SweepDir
from musicsweep.manifest import JobEntry, Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.sightings import Sightings
from musicsweep.sweep.follow import act_on
from musicsweep.sweep.takers import live_takers
from musicsweep.sweep.trackers import OrphanTracker


class RecordingBackend:
    """The three hooks `act_on` calls, recording which jobs' workers it was asked to kill."""

    def __init__(self) -> None:
        self.killed: list[list[str]] = []

    def reconcile(self, sweep: SweepDir, manifest: Manifest) -> None:
        pass

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        self.killed.append(sorted(job_ids))

    def fetch(self, sweep: SweepDir, manifest: Manifest) -> None:
        pass


def test_a_worker_taking_clips_of_the_sweep_is_not_killed_as_an_orphan(tmp_path: Path) -> None:
    sweep = SweepDir(tmp_path / "runs", "fleet")
    sweep.root.mkdir(parents=True)
    store = open_store(StoreConfig(str(tmp_path / "runs")))
    beat = {"time": time.time(), "pid": 1, "progress": 0.0, "every_s": 10.0, "host": "gpu0"}
    store.put_json(sweep.keys.heartbeat(0, "L1"), beat | {"pool": True})  # done with its shard, taking
    store.put_json(sweep.keys.heartbeat(1, "L1"), beat | {"pool": False})  # done, and taking nothing
    manifest = Manifest(jobs={"aaaa0001": JobEntry(launch="L1", worker=0), "aaaa0002": JobEntry(launch="L1", worker=1)})
    states = dict.fromkeys(manifest.jobs, JobState.DONE_ORPHANS)
    backend = RecordingBackend()
    sightings = Sightings()
    taking = lambda: {(taker.launch, taker.worker) for taker in live_takers(store, sweep, sightings, 30.0)}  # noqa: E731

    states, said, _ = act_on(sweep, manifest, backend, states, OrphanTracker(0), taking=taking)

    assert backend.killed == [["aaaa0002"]]
    assert said == ["killing the orphan worker(s) of 1 finished job(s)"]
    assert set(states.values()) == {JobState.DONE}
