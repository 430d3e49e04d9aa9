"""Units of issue 17: the outage budget, WAV completeness, the spool, per-spec loading, pull temporaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from musicsweep.store.local import LocalStore
from musicsweep.store.retry import RetryingStore, StoreUnreachable, is_transient


class FlakyStore(LocalStore):
    """A local store whose `info` fails `failures` times with a connection error first."""

    def __init__(self, root: Path, failures: int, error: Exception | None = None) -> None:
        super().__init__(root)
        self.failures, self.calls = failures, 0
        self.error = error or EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    def info(self, key: str):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return super().info(key)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def retrying(inner, budget: float, lines: list[str], clock: FakeClock) -> RetryingStore:
    return RetryingStore(inner, budget, lines.append, sleep=clock.sleep, clock=clock)


def test_outage_shorter_than_the_budget_is_ridden_out(tmp_path: Path) -> None:
    clock, lines = FakeClock(), []
    store = retrying(FlakyStore(tmp_path, failures=6), 300, lines, clock)
    assert store.info("missing") is None
    assert store.inner.calls == 7
    retries = [line for line in lines if line.startswith("store unreachable, retrying (")]
    assert len(retries) == 6
    assert retries[-1].startswith("store unreachable, retrying (16 s so far): info missing: EndpointConnectionError")
    assert lines[-1] == "store reachable again after 26 s"


def test_outage_past_the_budget_raises_and_the_budget_is_shared(tmp_path: Path) -> None:
    clock, lines = FakeClock(), []
    store = retrying(FlakyStore(tmp_path, failures=10**6), 20, lines, clock)
    with pytest.raises(StoreUnreachable, match=r"unreachable for 20 s \(store.outage_budget_s is 20\) during info a"):
        store.info("a")
    calls = store.inner.calls
    with pytest.raises(StoreUnreachable):  # the same outage: no fresh budget for the next call
        store.info("b")
    assert store.inner.calls == calls + 1


def test_refused_requests_are_not_retried(tmp_path: Path) -> None:
    denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject")
    clock, lines = FakeClock(), []
    store = retrying(FlakyStore(tmp_path, failures=1, error=denied), 300, lines, clock)
    with pytest.raises(ClientError):
        store.info("a")
    assert lines == [] and store.inner.calls == 1
    unavailable = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "Put")
    assert is_transient(unavailable) and not is_transient(OSError(28, "No space left on device"))
