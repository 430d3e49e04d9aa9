"""A store that is a folder on this host's disk."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from musicsweep.atomic import atomic_write_bytes
from musicsweep.errors import MusicsweepError
from musicsweep.store.base import ObjectInfo, Store
from musicsweep.store.tempfiles import pull_temp_path


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
            if os.path.getsize(tmp) != os.path.getsize(path):  # a short copy must never replace the key
                raise OSError(f"{key}: copied {os.path.getsize(tmp)} of {os.path.getsize(path)} bytes")
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

    def get_range(self, key: str, start: int, end: int) -> bytes:
        with open(self._path(key), "rb") as handle:
            handle.seek(start)
            return handle.read(max(0, end - start))

    def get_file(self, key: str, path: Path) -> None:
        """Copy to a pull temporary (see `tempfiles`) next to `path`, then rename it into place."""
        path = Path(path)
        if self._path(key).resolve() == path.resolve():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = pull_temp_path(path)
        try:
            shutil.copyfile(self._path(key), partial)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def list(self, prefix: str) -> dict[str, ObjectInfo]:
        base = self._path(prefix)
        folder = base if base.is_dir() else base.parent
        found: dict[str, ObjectInfo] = {}
        if not folder.is_dir():
            return found
        for dirpath, _, filenames in os.walk(folder):  # strings, not Paths: a sweep lists 100,000s of keys
            relative = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            head = "" if relative == "." else f"{relative}/"
            for name in filenames:
                key = head + name
                if (name.startswith(".") and name.endswith(".tmp")) or not key.startswith(prefix):
                    continue
                try:
                    stat = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                found[key] = ObjectInfo(stat.st_size, f"{stat.st_size}-{stat.st_mtime_ns}")
        return found

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def age_s(self, key: str) -> float | None:
        """By this machine's clock, which stamps the file's mtime (a folder on a local disk)."""
        try:
            return max(0.0, time.time() - self._path(key).stat().st_mtime)
        except FileNotFoundError:
            return None

    def local_path(self, key: str) -> Path | None:
        return self._path(key)
