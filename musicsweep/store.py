"""Where finished results live: a local folder or S3. Every write is atomic.

Keys are `/`-separated paths relative to the store root; `JobPaths` and `WorkerPaths` name them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from musicsweep.atomic import atomic_write_bytes
from musicsweep.config import StoreConfig
from musicsweep.errors import MusicsweepError


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

    def get_json(self, key: str) -> dict:
        return json.loads(self.get_bytes(key))

    def put_json(self, key: str, payload: dict) -> None:
        self.put_bytes(key, json_bytes(payload))


class LocalStore(Store):
    """A folder on this host's disk; the ETag is size and mtime, which is enough to skip copies."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MusicsweepError(f"store {self.url}: cannot create folder: {error.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise MusicsweepError(f"store {self.url}: folder is not writable")

    def info(self, key: str) -> ObjectInfo | None:
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(stat.st_size, f"{stat.st_size}-{stat.st_mtime_ns}")

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        if Path(path).resolve() == target.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self._path(key), data)

    def put_new(self, key: str, data: bytes) -> bool:
        """Write a temporary file, then hard-link it into place: create-only and never seen half-written."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def get_file(self, key: str, path: Path) -> None:
        if self._path(key).resolve() != Path(path).resolve():
            atomic_write_bytes(Path(path), self.get_bytes(key))

    def list(self, prefix: str) -> dict[str, ObjectInfo]:
        base = self._path(prefix)
        folder = base if base.is_dir() else base.parent
        found: dict[str, ObjectInfo] = {}
        if not folder.is_dir():
            return found
        for dirpath, _, filenames in os.walk(folder):
            for name in filenames:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    info = self.info(key)
                    if info is not None:
                        found[key] = info
        return found

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


def open_store(config: StoreConfig) -> Store:
    """A Store for `config.url`: `s3://bucket/prefix` or a folder."""
    if config.url.startswith("s3://"):
        from musicsweep.s3_store import S3Store

        return S3Store(config)
    return LocalStore(Path(config.url))


def store_config_to_env(config: StoreConfig) -> dict[str, str]:
    """The store settings a worker needs (never credentials: those come from the host's own chain)."""
    options = {k: v for k, v in (("endpoint_url", config.endpoint_url), ("region", config.region)) if v}
    if config.profile:
        options["profile"] = config.profile
    return {"MUSICSWEEP_STORE": config.url, "MUSICSWEEP_STORE_OPTIONS": json.dumps(options, sort_keys=True)}


def store_config_from_env(environ: dict[str, str]) -> StoreConfig:
    options = json.loads(environ.get("MUSICSWEEP_STORE_OPTIONS") or "{}")
    return StoreConfig(url=environ["MUSICSWEEP_STORE"], **options)
