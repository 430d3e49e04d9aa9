"""Load job specs checked before unpickling, one by one, so one bad spec fails one job.

Unpickling runs code, so a spec is unpickled only once its bytes match the digest its launch
recorded (`musicsweep.digests`): the environment's `MUSICSWEEP_SPECS_SHA256` vouches for the
launch's spec list, the list for every spec of the sweep, whichever launch wrote it. A spec that
does not match fails its job with `spec digest mismatch: refusing to load …` and nothing of it
runs. One that matches but cannot be unpickled fails its job with the reason. A job id is its
spec file's stem (`jobs/{job_id}.pkl`), which is all its `.failed` marker needs.

A worker started by hand, with no digest in its environment, loads its specs unchecked: whoever
started it vouches for them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle

from musicsweep.contract import SPECS_SHA256
from musicsweep.digests import MISMATCH, DigestMismatch, check_digest, parse_spec_list
from musicsweep.job import Job
from musicsweep.layout import JobPaths, StoreKeys, spec_list_file
from musicsweep.store.base import Store


@dataclass(frozen=True)
class SpecBook:
    """Where this worker reads specs (its work folder, else the store) and the digests that vouch
    for them: None for a hand-started worker; `refusal` when the launch's list itself was bad."""

    work_dir: Path
    sweep: str
    store: Store | None = None
    digests: dict[str, str] | None = None
    refusal: str | None = None

    @classmethod
    def of_launch(cls, work_dir: Path, sweep: str, store: Store | None, list_sha256: str) -> SpecBook:
        """The launch's spec list, found and checked by `list_sha256` (from the environment)."""
        book = cls(Path(work_dir), sweep, store)
        if not list_sha256:
            return book
        path = spec_list_file(work_dir, list_sha256)
        key = StoreKeys(sweep).spec_list(list_sha256)
        try:
            data, where = book._read(path, key)
            check_digest(data, list_sha256, f"the spec list {where} ({SPECS_SHA256})")
            return dataclasses.replace(book, digests=parse_spec_list(data, where))
        except FileNotFoundError:
            refusal = f"{MISMATCH} any spec: the launch's spec list {path} is missing"
        except DigestMismatch as error:
            refusal = str(error)
        return dataclasses.replace(book, digests={}, refusal=refusal)

    def _read(self, path: Path, key: str) -> tuple[bytes, str]:
        """A file of the work folder, else its key in the store; raises FileNotFoundError when neither has it."""
        try:
            return path.read_bytes(), str(path)
        except FileNotFoundError:
            if self.store is None or not self.sweep or not self.store.exists(key):
                raise
            return self.store.get_bytes(key), key

    def verified(self, job_id: str, data: bytes, where: str) -> bytes:
        """`data` when it is the spec the launch recorded for `job_id`; raises DigestMismatch otherwise."""
        if self.refusal:
            raise DigestMismatch(self.refusal)
        if self.digests is None:
            return data
        expected = self.digests.get(job_id)
        if expected is None:
            raise DigestMismatch(f"{MISMATCH} {where}: the launch recorded no spec for job {job_id}")
        return check_digest(data, expected, where)

    def spec_bytes(self, job_id: str) -> bytes:
        """Any spec of the sweep by job id, checked: from the work folder, else the store."""
        path = JobPaths(self.work_dir, self.sweep, job_id, "").spec
        data, where = self._read(path, StoreKeys(self.sweep).spec(job_id))
        return self.verified(job_id, data, where)

    def load_file(self, path: Path) -> Job:
        """The job of a spec file, unpickled only from bytes checked here."""
        return unpickled_job(self.verified(path.stem, path.read_bytes(), str(path)))

    def load_job(self, job_id: str) -> Job:
        """Any job of the sweep (a clip taken from another shard), unpickled only from checked bytes."""
        return unpickled_job(self.spec_bytes(job_id))


def unpickled_job(checked: bytes) -> Job:
    job = cloudpickle.loads(checked)
    if not isinstance(job, Job):
        raise TypeError(f"holds a {type(job).__name__}, not a Job")
    return job


@dataclass
class LoadedSpecs:
    jobs: list[Job] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # job id -> one-line reason

    def sweep(self, fallback: str) -> str:
        """The sweep's name: from any good spec, else `fallback` (the environment's or the work folder's)."""
        return self.jobs[0].sweep if self.jobs else fallback


def load_specs(paths: list[Path], book: SpecBook | None = None) -> LoadedSpecs:
    """Each spec file through `book` (unchecked without one); a bad one fails only its own job."""
    loaded = LoadedSpecs()
    for path in map(Path, paths):
        try:
            job = (book or SpecBook(path.parent.parent, "")).load_file(path)
        except DigestMismatch as error:
            loaded.broken[path.stem] = str(error)
        except Exception as error:  # noqa: BLE001 - any unreadable spec fails only its own job
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            loaded.broken[path.stem] = f"{path}: cannot load job spec: {reason}"
        else:
            loaded.jobs.append(job)
    return loaded
