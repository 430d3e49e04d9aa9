"""Ride out a store outage: retry transient errors with backoff within one outage budget.

An S3 endpoint that restarts, a dropped connection or a 503 must not kill a worker that has
paid for its clips. Every call of the wrapped store is retried while the outage is younger than
`outage_budget_s`; the budget counts from the first failure of the current outage (any success
ends it), so a run of failing calls shares one budget instead of getting one each. Past it,
`StoreUnreachable` tells the worker to stop with its own exit status and keep its spool.

boto3's exceptions are imported only when an error comes from boto3 or botocore (they are loaded
then): a worker with a folder store never loads the AWS SDK.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from musicsweep.store.base import ObjectInfo, Store

T = TypeVar("T")
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"}


class StoreUnreachable(Exception):
    """The store failed for longer than the outage budget; nothing more can be saved now."""


class TransferMismatch(Exception):
    """What arrived differs in size or checksum from what was sent: the transfer is redone."""


def is_transient(error: BaseException) -> bool:
    """Network failures, server errors and mismatched uploads; not a refused key or a missing bucket."""
    if isinstance(error, TransferMismatch):
        return True
    if not type(error).__module__.startswith(("boto3", "botocore")):
        return False
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, IncompleteReadError

    if isinstance(error, HTTPClientError | ConnectionError | IncompleteReadError):
        return True
    if isinstance(error, ClientError):
        status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        code = str(error.response.get("Error", {}).get("Code", ""))
        return status.startswith("5") or code in TRANSIENT_CODES
    cause = error.__cause__ or error.__context__  # boto3's S3UploadFailedError wraps the real error
    return isinstance(error, S3UploadFailedError) and cause is not None and is_transient(cause)


def one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


class RetryingStore(Store):
    """Any Store, with every call retried through transient errors within one outage budget."""

    def __init__(
        self, inner: Store, outage_budget_s: float, log: Callable[[str], None], sleep=time.sleep, clock=time.monotonic
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.outage_budget_s = outage_budget_s
        self.log = log
        self.sleep, self.clock = sleep, clock
        self.outage_since: float | None = None

    def _call(self, what: str, call: Callable[[], T]) -> T:
        delay = BACKOFF_START_S
        while True:
            try:
                result = call()
            except Exception as error:
                if not is_transient(error):
                    raise
                now = self.clock()
                self.outage_since = now if self.outage_since is None else self.outage_since
                elapsed = now - self.outage_since
                if elapsed >= self.outage_budget_s:
                    raise StoreUnreachable(
                        f"store {self.url} unreachable for {elapsed:.0f} s (store.outage_budget_s is "
                        f"{self.outage_budget_s:g}) during {what}: {one_line(error)}"
                    ) from None
                self.log(f"store unreachable, retrying ({elapsed:.0f} s so far): {what}: {one_line(error)}")
                self.sleep(min(delay, self.outage_budget_s - elapsed))
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if self.outage_since is not None:
                self.log(f"store reachable again after {self.clock() - self.outage_since:.0f} s")
                self.outage_since = None
            return result

    def check(self) -> None:
        self._call("check", self.inner.check)

    def info(self, key: str) -> ObjectInfo | None:
        return self._call(f"info {key}", lambda: self.inner.info(key))

    def put_file(self, key: str, path: Path) -> None:
        self._call(f"upload {key}", lambda: self.inner.put_file(key, path))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(f"put {key}", lambda: self.inner.put_bytes(key, data))

    def put_new(self, key: str, data: bytes) -> bool:
        return self._call(f"create {key}", lambda: self.inner.put_new(key, data))

    def get_bytes(self, key: str) -> bytes:
        return self._call(f"get {key}", lambda: self.inner.get_bytes(key))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self._call(f"get {key}", lambda: self.inner.get_range(key, start, end))

    def get_file(self, key: str, path: Path) -> None:
        self._call(f"download {key}", lambda: self.inner.get_file(key, path))

    def list(self, prefix: str) -> dict[str, ObjectInfo]:
        return self._call(f"list {prefix}", lambda: self.inner.list(prefix))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", lambda: self.inner.delete(key))

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)

    def age_s(self, key: str) -> float | None:
        return self._call(f"age {key}", lambda: self.inner.age_s(key))


def direct(store: Store) -> Store:
    """The store without retries: for a heartbeat, or last words once the budget is spent."""
    return store.inner if isinstance(store, RetryingStore) else store
