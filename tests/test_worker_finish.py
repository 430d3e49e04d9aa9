"""`mark_unfinished`, run when a machine's worker has exited: it marks failed only the clips of its
shard that are neither finished nor being made by another worker that took them."""

from __future__ import annotations

from pathlib import Path

from musicsweep.config import StoreConfig
from musicsweep.layout import StoreKeys
from musicsweep.store import open_store
from musicsweep.worker.claims import Claims, Owner
from musicsweep.worker.finish import mark_unfinished


def test_a_clip_another_worker_took_is_not_marked_failed(tmp_path: Path) -> None:
    store, keys = open_store(StoreConfig(str(tmp_path / "store"))), StoreKeys("sw")
    other = Claims(store, "sw", Owner("gpu1", 4242, "L1", 1))
    assert other.acquire("taken") is None  # worker 1 took it from worker 0's shard, and makes it now
    assert other.acquire("handed") is None
    other.release("handed", "stopped")  # handed back: whoever is left may take it; nobody makes it now
    mine = Claims(store, "sw", Owner("gpu0", 77, "L1", 0))
    assert mine.acquire("mine") is None  # worker 0's own claim, left when it was killed
    store.put_bytes(keys.done("finished"), b"1\n")

    shard = ["taken", "handed", "mine", "never", "finished"]
    marked = mark_unfinished(store, "sw", shard, "worker exited with status 137 before this clip", "L1", 0)

    assert marked == ["handed", "mine", "never"]
    failed = sorted(key.rsplit("/", 1)[-1] for key in store.list(keys.markers) if key.endswith(".failed"))
    assert failed == ["handed.L1.failed", "mine.L1.failed", "never.L1.failed"]
