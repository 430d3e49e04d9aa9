"""Which clips of the sweep a worker may take once its own shard is through (`worker/pool.py`).

In process, on a folder store laid out as the local backend leaves it (store and work folder one
tree), with claims of owners on another host: those are never taken for dead, only expired.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from musicsweep.config import EngineConfig, StoreConfig
from musicsweep.failure import failure_text
from musicsweep.job import Job
from musicsweep.layout import StoreKeys, SweepDir
from musicsweep.store import open_store
from musicsweep.worker.claims import Claims, Owner, current_claim
from musicsweep.worker.context import EXIT_STOPPED, WorkerContext
from musicsweep.worker.heartbeat import heartbeat_interval
from musicsweep.worker.loop import LOST_RACE_WAIT_S
from musicsweep.worker.pool import Pool, Round
from musicsweep.worker.specs import SpecBook
from musicsweep.worker.tally import Tally
from tests.helpers import make_jobs, make_worker

LEASE_S = 30.0


@pytest.fixture
def sweep(tmp_path: Path) -> SweepDir:
    return SweepDir(tmp_path / "runs", "s")


def context(sweep: SweepDir, host_disk_store: bool = False) -> WorkerContext:
    return WorkerContext(
        work_dir=sweep.root,
        store=open_store(StoreConfig(url=str(sweep.sweeps_dir))),
        worker_id=0,
        num_workers=2,
        hourly_cost_usd=0.0,
        is_restart=False,
        launch_id="L2",
        engine_config=EngineConfig(),
        lease_s=LEASE_S,
        host_disk_store=host_disk_store,
        host="here",
    )


class Clock:
    """A monotonic clock the test moves: how long the pool has watched a claim unrenewed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(sweep: SweepDir, own: list[Job], host_disk_store: bool = False, clock: Clock | None = None) -> Pool:
    ctx = context(sweep, host_disk_store)
    claims = Claims(ctx.store, "s", Owner("here", 1, "L2", 0), LEASE_S, clock=clock or Clock())
    tally = Tally()
    tally.start(own)
    return Pool(ctx, claims, own, tally, SpecBook(sweep.root, "s", ctx.store))


def shard(sweep: SweepDir, launch: str, worker: int, jobs: list[Job]) -> None:
    for job in jobs:
        sweep.write_spec(job)
    store = open_store(StoreConfig(url=str(sweep.sweeps_dir)))
    store.put_json(StoreKeys("s").shard(launch, worker), {"jobs": [job.job_id for job in jobs]})


def elsewhere(sweep: SweepDir, launch: str = "L2", worker: int = 1) -> Claims:
    """Claims of a worker on another host (pid 7): its liveness is its heartbeat, then its renewals."""
    store = open_store(StoreConfig(url=str(sweep.sweeps_dir)))
    return Claims(store, "s", Owner("elsewhere", 7, launch, worker), LEASE_S)


def beat(sweep: SweepDir, launch: str, worker: int, pid: int = 7) -> None:
    store = open_store(StoreConfig(url=str(sweep.sweeps_dir)))
    store.put_json(StoreKeys("s").heartbeat(worker, launch), {"time": time.time(), "pid": pid, "progress": 0})


def names(jobs: list[Job]) -> list[str]:
    return [job.output_name for job in jobs]


def test_never_claimed_clips_of_another_shard_are_free_from_its_tail(sweep: SweepDir) -> None:
    jobs = make_jobs(6)
    mine, theirs = jobs[:2], jobs[2:]
    shard(sweep, "L2", 0, mine)
    shard(sweep, "L2", 1, theirs)
    store = open_store(StoreConfig(url=str(sweep.sweeps_dir)))
    for job in mine:
        store.put_bytes(StoreKeys("s").done(job.job_id), b"1\n")
    found = pool(sweep, mine).survey(None, set())
    assert names(found.free) == names(theirs[::-1])  # their owner works from the head
    assert (found.held, found.waiting) == (0, 0)


def test_live_is_held_silent_waits_then_is_free_once_watched_unrenewed_for_a_lease(sweep: SweepDir) -> None:
    jobs = make_jobs(3)
    shard(sweep, "L2", 1, jobs)
    live, silent = elsewhere(sweep), elsewhere(sweep, worker=2)
    assert live.acquire(jobs[0].job_id) is None
    beat(sweep, "L2", 1)
    assert silent.acquire(jobs[1].job_id) is None  # worker 2 never beats: killed on its host
    clock = Clock()
    taker = pool(sweep, [], clock=clock)
    found = taker.survey(None, set())
    assert (found.held, found.waiting) == (1, 1)
    assert names(found.free) == names(jobs[2:])  # never claimed
    clock.now += LEASE_S  # the silent owner's claim, watched unrenewed for a lease on our own clock
    live.renew()  # the live owner's heartbeat renews its claim meanwhile
    beat(sweep, "L2", 1)
    found = taker.survey(None, set())
    assert (found.held, found.waiting) == (1, 0)
    assert sorted(names(found.free)) == sorted(names(jobs[1:]))


def test_a_released_clip_is_free_and_a_done_one_is_not(sweep: SweepDir) -> None:
    jobs = make_jobs(2)
    shard(sweep, "L2", 1, jobs)
    other = elsewhere(sweep)
    beat(sweep, "L2", 1)
    assert other.acquire(jobs[0].job_id) is None
    other.release(jobs[0].job_id)  # handed back on a stop
    store = open_store(StoreConfig(url=str(sweep.sweeps_dir)))
    store.put_bytes(StoreKeys("s").done(jobs[1].job_id), b"1\n")
    assert names(pool(sweep, []).survey(None, set()).free) == names(jobs[:1])


def test_a_permanent_failure_is_never_taken_a_retryable_one_is(sweep: SweepDir) -> None:
    jobs = make_jobs(2)
    shard(sweep, "L2", 1, jobs)
    store = open_store(StoreConfig(url=str(sweep.sweeps_dir)))
    keys = StoreKeys("s")
    store.put_bytes(keys.failed(jobs[0].job_id, "L2"), failure_text("ValueError: bad params", True).encode())
    store.put_bytes(keys.failed(jobs[1].job_id, "L2"), b"spot interruption notice\n")
    assert names(pool(sweep, []).survey(None, set()).free) == names(jobs[1:])


def test_another_launch_counts_only_while_one_of_its_workers_beats(sweep: SweepDir) -> None:
    jobs = make_jobs(3)
    shard(sweep, "L1", 0, jobs)  # a cancelled launch's clips are left alone
    assert pool(sweep, []).survey(None, set()).free == []
    beat(sweep, "L1", 0)
    assert sorted(names(pool(sweep, []).survey(None, set()).free)) == sorted(names(jobs))


class CountingStore:
    """A store that counts its calls by method: what a round costs on S3, where each is a request."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, Counter()

    def __getattr__(self, name: str):
        method = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


def test_a_round_lists_the_shard_lists_once_per_launch_and_the_claims_only_while_clips_are_left(
    sweep: SweepDir,
) -> None:
    mine, theirs = make_jobs(8)[:4], make_jobs(8)[4:]
    shard(sweep, "L2", 0, mine)
    shard(sweep, "L2", 1, theirs)
    beat(sweep, "L2", 1)
    taker = pool(sweep, mine)
    taker.store = counting = CountingStore(taker.store)
    listings = []
    for _ in range(3):  # three batches: markers and claims each round, the shard lists on the first
        assert len(taker.survey(None, set()).free) == 8
        listings.append(counting.calls.pop("list", 0))
    store = open_store(StoreConfig(url=str(sweep.sweeps_dir)))
    for job in mine + theirs:
        store.put_bytes(StoreKeys("s").done(job.job_id), b"1\n")
    assert taker.survey(None, set()).free == []
    listings.append(counting.calls.pop("list", 0))  # every clip done: the markers alone
    beat(sweep, "L3", 0)  # a new launch's worker: its shard lists are listed once
    taker.survey(None, set())
    listings.append(counting.calls.pop("list", 0))
    assert listings == [3, 2, 2, 1, 2]


def test_the_current_group_and_loaded_model_come_first(sweep: SweepDir) -> None:
    short, long, other = make_jobs(2, 1.0), make_jobs(2, 3.0), make_jobs(2, 1.0, model="tiny-stereo")
    shard(sweep, "L2", 1, short + long + other)
    found = pool(sweep, []).survey(long[0].group_key, {"tiny"})
    assert names(found.free[:2]) == names(long[::-1])
    assert {job.model for job in found.free[-2:]} == {"tiny-stereo"}


def test_a_host_disk_store_takes_only_clips_this_hosts_workers_started(sweep: SweepDir) -> None:
    jobs = make_jobs(3)
    shard(sweep, "L2", 1, jobs)  # shard lists are ignored there: the launcher never writes them to a host
    (sweep.root / "jobs" / f"{jobs[0].job_id}.pid").write_text("7 7\n")
    assert names(pool(sweep, [], host_disk_store=True).survey(None, set()).free) == names(jobs[:1])


def test_a_stopped_worker_hands_back_every_claim_it_still_holds(tmp_path: Path, capsys) -> None:
    worker = make_worker(tmp_path)
    jobs = make_jobs(2)
    for job in jobs:
        assert worker.claims.acquire(job.job_id) is None
    worker.stop.event.set()  # SIGTERM, SIGUSR2 or a spot notice before these clips' batch ran
    assert worker.run([]) == EXIT_STOPPED
    store, keys = worker.context.store, StoreKeys("s")
    assert [current_claim(store, keys, job.job_id).released is not None for job in jobs] == [True, True]
    assert worker.claims.held == {}
    assert "handed back 2 unstarted clip(s)" in capsys.readouterr().out


def test_a_slow_worker_leaves_the_tail_to_faster_ones_and_the_fastest_never_does() -> None:
    free = make_jobs(2)  # 4 audio seconds left in the sweep
    tail = Round(free=free, rates=[3.2])
    assert tail.leave_to_faster(free[:1], 0.8), "2 s at 0.8 a-s/s: 2.5 s; the other makes all 4 s in 1.25 s"
    assert not tail.leave_to_faster(free[:1], 3.2), "as fast as the others: it takes its share"
    assert not tail.leave_to_faster(free[:1], None), "no batch made yet: no speed to compare"
    assert not Round(free=free, rates=[]).leave_to_faster(free[:1], 0.1), "no other live worker: take it"
    early = Round(free=make_jobs(12), rates=[3.2])
    assert not early.leave_to_faster(free[:1], 0.8), "24 s left: the slow worker's clip helps"
    three = Round(free=free[:1], rates=[1.0, 1.0])
    assert not three.leave_to_faster(free[:1], 1.0), "equals never leave the last clip to each other"


def test_a_worker_that_loses_the_race_for_a_free_clip_looks_again_at_once(tmp_path: Path, monkeypatch) -> None:
    """Two workers starting together: the other claims the clip this one surveyed as free. The next
    look comes half a second later, not a heartbeat later (a pod idled, paid, for a minute), and
    finds nothing left: the worker ends."""
    worker = make_worker(tmp_path)
    [job] = make_jobs(1)
    other = Claims(worker.context.store, "s", Owner("elsewhere", 7, "test", 1), LEASE_S)
    assert other.acquire(job.job_id) is None
    rounds = iter([Round(free=[job]), Round(free=[])])
    waits: list[float] = []
    monkeypatch.setattr(Pool, "survey", lambda self, group, loaded: next(rounds))
    monkeypatch.setattr(worker.stop.event, "wait", lambda timeout=None: waits.append(timeout) or False)
    worker.take_from_pool([])
    assert waits == [LOST_RACE_WAIT_S] and next(rounds, None) is None
    assert worker.tally.saved == set() and worker.claims.held == {}, "nothing made, nothing held"


def test_lost_races_in_a_row_wait_longer_up_to_a_heartbeat(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)
    cap = heartbeat_interval(worker.claims.lease_s)
    waits = [worker.after_lost_race(n) for n in range(1, 12)]
    assert waits[:3] == [LOST_RACE_WAIT_S, 2 * LOST_RACE_WAIT_S, 4 * LOST_RACE_WAIT_S]
    assert waits == sorted(waits) and waits[-1] == cap
