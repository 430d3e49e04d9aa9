"""A Ray node lost mid-sweep, without a cluster: the driver's release of its claims
(musicsweep/backends/ray/lost.py), and each worker attempt's own log and lifetime record."""

from __future__ import annotations

import json
from pathlib import Path

from musicsweep.backends.ray.host import LogUploads, open_attempt
from musicsweep.backends.ray.lost import RELEASED_LOST, LostNodes, node_host, node_of, release_claims_on
from musicsweep.config import StoreConfig
from musicsweep.contract import WorkerEnv, worker_environment
from musicsweep.costs.summary import write_cost_summary
from musicsweep.layout import StoreKeys, SweepDir
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.worker.claims import Claims, Owner, current_claim, release_for_dead
from musicsweep.worker.context import WorkerContext

DEAD, ALIVE = "a" * 16, "b" * 16


def folder_store(tmp_path: Path) -> Store:
    return open_store(StoreConfig(str(tmp_path / "store")))


def claims_of(store: Store, owner: Owner) -> Claims:
    return Claims(store, "s", owner, lease_s=3600)


def test_a_release_for_a_dead_owner_frees_its_clip_at_once_and_never_hides_a_taker(tmp_path: Path) -> None:
    """Hosts on other machines: a dead pid there proves nothing, so without the release the survivor
    would wait out the hour's lease."""
    store = folder_store(tmp_path)
    lost = claims_of(store, Owner(node_host("n", DEAD), 11, "L1", 1))
    survivor = claims_of(store, Owner(node_host("n", ALIVE), 12, "L1", 0))
    restart = claims_of(store, Owner(node_host("m", ALIVE), 13, "L1", 1))
    driver = Owner("head", 14, "L1", -2)
    assert lost.acquire("long") is None and lost.acquire("short") is None
    assert survivor.acquire("long") is not None  # live by its lease
    assert release_for_dead(store, lost.keys, "long", 0, driver, RELEASED_LOST)
    assert not lost.still_held("long"), "a worker that outlived its node's loss must not upload"
    assert survivor.acquire("long") is None  # at once
    assert restart.acquire("long") is not None  # the survivor's now
    assert restart.acquire("short") is None  # an earlier run of itself: the next generation, create-only
    assert not release_for_dead(store, lost.keys, "short", 0, driver, RELEASED_LOST), "a release never hides a taker"
    assert current_claim(store, lost.keys, "short").owner == restart.owner
    assert [current_claim(store, lost.keys, job).generation for job in ("long", "short")] == [2, 1]


def test_the_driver_releases_exactly_the_unreleased_claims_held_on_newly_dead_nodes(tmp_path: Path) -> None:
    store = folder_store(tmp_path)
    keys = StoreKeys("s")
    on_dead = claims_of(store, Owner(node_host("n", DEAD), 11, "L1", 1))
    on_alive = claims_of(store, Owner(node_host("n", ALIVE), 12, "L1", 0))
    outside_ray = claims_of(store, Owner("laptop", 13, "L0", 0))
    for job in ("held", "done"):
        assert on_dead.acquire(job) is None
    on_dead.release("done", "done")
    assert on_alive.acquire("alive") is None and outside_ray.acquire("laptop") is None
    dead: set[str] = {"c" * 16}  # dead before the driver started: none of its workers ran there
    lost = LostNodes(lambda: set(dead))
    assert lost.new() == set()
    dead.add(DEAD)
    nodes = lost.new()
    assert nodes == {DEAD} and lost.new() == set()
    assert release_claims_on(store, keys, nodes, "L1") == {"held": on_dead.owner}
    released = current_claim(store, keys, "held")
    assert (released.generation, released.released, released.owner.worker) == (1, RELEASED_LOST, -2)
    assert [current_claim(store, keys, job).generation for job in ("done", "alive", "laptop")] == [0, 0, 0]
    assert release_claims_on(store, keys, nodes, "L1") == {}  # released once
    assert node_of(node_host("n", "d" * 56)) == "d" * 16 and node_of("laptop") is None


def test_each_attempt_keeps_its_log_and_its_paid_time(tmp_path: Path) -> None:
    """The lost attempt's log, uploaded while it ran, and its last lifetime record survive its restart;
    the cost summary pays for both attempts."""
    store = folder_store(tmp_path)
    sweep = SweepDir(tmp_path / "node", "s")
    first = sweep.worker(1, "L1")
    first.log.parent.mkdir(parents=True)
    first.log.write_text("[musicsweep] uploaded a.wav\n")
    upload = LogUploads(store, first)
    upload()
    first.log.write_text("[musicsweep] uploaded a.wav\n[musicsweep] window 1/4\n")
    upload()
    assert [open_attempt(store, sweep, 1, "L1", "node-b").attempt for _ in range(2)] == [1, 2]
    assert store.get_bytes(first.log_key).decode().count("\n") == 2
    assert store.get_bytes(sweep.worker(1, "L1", 1).log_key).startswith(b"[musicsweep] restart 1 of worker 1")
    assert sweep.worker(1, "L1", 2).log.read_text().startswith("[musicsweep] restart 2 of worker 1")

    env = worker_environment(
        {"MUSICSWEEP_STORE": str(tmp_path / "store")}, str(sweep.root), 1, 2, 3.6, host="n@x", attempt=1
    )
    context = WorkerContext.of(WorkerEnv.from_env(env))
    assert (context.host, context.attempt) == ("n@x", 1)
    records = {0: (0.0, 100.0, False), 1: (150.0, 200.0, True)}  # the lost attempt's last beat, the restart's end
    for attempt, (start, end, finished) in records.items():
        record = {"launch_id": "L1", "worker_id": 1, "start": start, "end": end, "hourly_cost_usd": 3.6}
        record["finished"] = finished
        store.put_bytes(sweep.worker(1, "L1", attempt).lifetime_key("L1"), json.dumps(record).encode())
    summary = write_cost_summary(SweepDir(tmp_path / "store", "s"))
    assert summary.workers == 2 and summary.machine_s == 150.0
