"""Job-level claims with leases (musicsweep/worker/claims.py), on a local folder and on S3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicsweep.config import StoreConfig
from musicsweep.store import open_store
from musicsweep.worker import claims
from musicsweep.worker.claims import Claims, Owner, current_claim
from tests.fixtures.s3 import S3Bucket


class LeaseClock:
    """The claims' clock (`time.time()` in musicsweep/worker/claims.py), moved by the test.

    With real sleeps the lease ran out when a loaded machine got round to it: an S3 call slower
    than the margin flipped the outcome. The store stays real; only the time of day is the test's."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", ["folder", pytest.param("s3", marks=pytest.mark.e2e)])
def test_claims_exclude_any_other_owner_until_the_lease_expires(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "s3":
        bucket: S3Bucket = request.getfixturevalue("moto_bucket")
        store = open_store(StoreConfig(bucket.url, endpoint_url=bucket.server.endpoint_url, region="us-east-1"))
    else:
        store = open_store(StoreConfig(str(tmp_path / "store")))
    clock = LeaseClock()
    monkeypatch.setattr(claims, "time", clock)
    # Other hosts' owners: a dead pid there proves nothing, only the lease counts.
    a = Claims(store, "s", Owner("host-a", 1, "L1", 0), lease_s=1.5)
    b = Claims(store, "s", Owner("host-b", 2, "L2", 0), lease_s=1.5)
    assert a.acquire("job") is None
    held = b.acquire("job")
    assert held is not None and held.owner.launch == "L1"
    clock.now += 1.0
    a.renew()  # the heartbeat keeps it live past the first expiry
    clock.now += 0.8
    assert b.acquire("job") is not None
    clock.now += 1.6  # no renewal: the lease runs out and any launch may take over, exactly once
    assert b.acquire("job") is None
    assert current_claim(store, a.keys, "job").generation == 1
    assert a.renew() == ["job"] and not a.still_held("job")
    b.release("job")
    assert a.acquire("job") is None  # a released claim is free at once


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
    assert current_claim(store, second.keys, "job").generation == 0
