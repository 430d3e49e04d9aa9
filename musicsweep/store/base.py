"""The store interface that a local folder and S3 both honour. Every write is atomic.

Keys are `/`-separated paths relative to the store root; `JobPaths` and `WorkerPaths` name them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str


def json_bytes(payload: dict) -> bytes:
    """How every JSON object in the store is encoded."""
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


class Store(ABC):
    """Minimal object-store interface that both a folder and S3 can honour."""

    url: str

    @abstractmethod
    def check(self) -> None:
        """Raise MusicsweepError (one line) if the store cannot be written; called before any work."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo | None: ...

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Upload atomically: readers see nothing or the whole object."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_new(self, key: str, data: bytes) -> bool:
        """Create `key` only if absent; False if it already existed (a claim lost to another writer)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` (exclusive, clipped to the object), e.g. a WAV's header."""
        return self.get_bytes(key)[start:end]

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def list(self, prefix: str) -> dict[str, ObjectInfo]:
        """All keys under `prefix` with their size and ETag, in as few calls as the store allows."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def local_path(self, key: str) -> Path | None:
        """The file behind `key` when the store is a local folder, so pulls need not copy."""
        return None

    def age_s(self, key: str) -> float | None:
        """Seconds since `key` was last written, by the store's own clock (never compared with a
        writer's): how a one-off look tells a fresh heartbeat or claim from a dead one. None when
        the object is missing or the store cannot tell."""
        return None

    def get_json(self, key: str) -> dict:
        return json.loads(self.get_bytes(key))

    def put_json(self, key: str, payload: dict) -> None:
        self.put_bytes(key, json_bytes(payload))
