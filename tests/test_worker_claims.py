"""Job-level claims with leases (musicsweep/worker/claims.py), on a local folder and on S3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicsweep.config import StoreConfig
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.worker.claims import Claims, Owner, current_claim
from musicsweep.worker.log import configure_logging
from tests.fixtures.s3 import S3Bucket


class LeaseClock:
    """A host's clocks, moved by the test: `monotonic` times leases, `wall` only stamps `expires`.

    With real sleeps the lease ran out when a loaded machine got round to it: an S3 call slower
    than the margin flipped the outcome. The store stays real; only the time is the test's."""

    def __init__(self, skew_s: float = 0.0) -> None:
        self.now, self.skew_s = 1_000_000.0, skew_s

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.skew_s


def claims_on(store: Store, owner: Owner, clock: LeaseClock, lease_s: float = 1.5) -> Claims:
    return Claims(store, "s", owner, lease_s=lease_s, clock=clock.monotonic, wall=clock.wall)


@pytest.mark.parametrize("kind", ["folder", pytest.param("s3", marks=pytest.mark.e2e)])
def test_claims_exclude_any_other_owner_until_the_lease_expires(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    if kind == "s3":
        bucket: S3Bucket = request.getfixturevalue("moto_bucket")
        store = open_store(StoreConfig(bucket.url, endpoint_url=bucket.server.endpoint_url, region="us-east-1"))
    else:
        store = open_store(StoreConfig(str(tmp_path / "store")))
    clock = LeaseClock()
    # Other hosts' owners: a dead pid there proves nothing, only the lease counts.
    a = claims_on(store, Owner("host-a", 1, "L1", 0), clock)
    b = claims_on(store, Owner("host-b", 2, "L2", 0), clock)
    assert a.acquire("job") is None
    held = b.acquire("job")  # b's first sight of generation 0
    assert held is not None and held.owner.launch == "L1"
    clock.now += 1.0
    a.renew()  # the heartbeat keeps it live: b sees new bytes and starts watching again
    clock.now += 0.8
    assert b.acquire("job") is not None
    clock.now += 1.6  # no renewal for a lease of b's own watching: any launch may take over, exactly once
    assert b.acquire("job") is None
    assert current_claim(store, a.keys, "job").generation == 1
    assert a.renew() == ["job"] and not a.still_held("job")
    b.release("job", "done")
    assert current_claim(store, a.keys, "job").released == "done"
    assert a.acquire("job") is None  # a released claim is free at once


@pytest.mark.parametrize("skew_s", [3600.0, -3600.0])
def test_clock_an_hour_off_never_takes_a_live_claim_and_takes_a_dead_one_after_one_lease(
    tmp_path: Path, skew_s: float
) -> None:
    """Owner and taker on hosts whose wall clocks differ by an hour, either way: only the taker's
    own watching counts, so a renewed claim is never taken, and an unrenewed one exactly one lease
    after the taker first saw its last renewal."""
    store = open_store(StoreConfig(str(tmp_path / "store")))
    owner_clock, taker_clock = LeaseClock(), LeaseClock(skew_s)
    owner = claims_on(store, Owner("host-a", 1, "L1", 0), owner_clock, lease_s=300)
    taker = claims_on(store, Owner("host-b", 2, "L2", 0), taker_clock, lease_s=300)
    assert owner.acquire("job") is None
    for _ in range(20):  # 20 heartbeats, 100 s apart: the claim stays live all along
        assert taker.acquire("job") is not None
        owner_clock.now += 100
        taker_clock.now += 100
        owner.renew()
    last_renewal_seen = taker_clock.now
    assert taker.acquire("job") is not None  # the owner's host died just after its last renewal
    taker_clock.now = last_renewal_seen + 299
    assert taker.acquire("job") is not None
    taker_clock.now = last_renewal_seen + 300
    assert taker.acquire("job") is None
    assert current_claim(store, taker.keys, "job").owner.launch == "L2"


def test_clock_an_unparsable_claim_is_logged_once_and_taken_over_after_a_lease(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = open_store(StoreConfig(str(tmp_path / "store")))
    clock = LeaseClock()
    taker = claims_on(store, Owner("host-b", 2, "L2", 0), clock, lease_s=300)
    store.put_bytes(taker.keys.claim("job", 0), b'{"generation": 0, "own')
    configure_logging()
    for _ in range(3):
        assert taker.acquire("job").owner.host == "?"
        clock.now += 100
    assert taker.acquire("job") is None
    assert current_claim(store, taker.keys, "job").generation == 1
    assert capsys.readouterr().out.count("cannot be parsed") == 1


def test_a_live_duplicate_of_the_same_launch_and_worker_on_this_host_is_not_an_earlier_run(tmp_path: Path) -> None:
    store = open_store(StoreConfig(str(tmp_path / "store")))
    duplicate = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        first = Claims(store, "s", Owner("this-host", duplicate.pid, "L1", 0))
        assert first.acquire("job") is None
        second = Claims(store, "s", Owner("this-host", os.getpid(), "L1", 0))
        assert second.acquire("job") is not None, "a live process that ran the same script must keep its claim"
        assert not second.still_held("job")
    finally:
        duplicate.kill()
        duplicate.wait()
    assert second.acquire("job") is None  # once it is gone, it was an earlier run: a requeue resumes at once
    assert current_claim(store, second.keys, "job").generation == 1  # the next generation, create-only
