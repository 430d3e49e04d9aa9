"""The manifest: what a sweep holds and where each job was sent, as typed records.

`{sweep}/manifest.json` is written atomically by the launcher only, at each launch. Backends read
it to poll, fetch and cancel; each keeps its own per-sweep record (instances, arrays, hosts) as a
typed `BackendState` that writes and reads its own JSON, in `backend_state` under its `KEY`. It is
the truth about a sweep: the store, backend settings, engine and recovery settings it was launched
with (`musicsweep.sweep.launched`), and each job's attempts, so later edits of musicsweep.yaml
never silently redirect a running sweep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import Any, ClassVar, Protocol, Self, TypeVar

from musicsweep.errors import MusicsweepError
from musicsweep.job import Job

REQUIRED_JOB_KEYS = ("prompt", "duration_s", "output_name")


class BackendState(Protocol):
    """A backend's own record of a sweep. `from_json({})` is the empty record (before any launch);
    the JSON keeps its shape, so a manifest written by an earlier version still loads."""

    KEY: ClassVar[str]

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Self: ...


S = TypeVar("S", bound=BackendState)
R = TypeVar("R")


def records_to_json(records: dict[str, Any]) -> dict[str, Any]:
    """A backend state kept as one dataclass record per key (launch or instance id), as JSON."""
    return {key: asdict(record) for key, record in records.items()}


def records_from_json(kind: type[R], payload: dict[str, Any]) -> dict[str, R]:
    """The records `records_to_json` wrote, each rebuilt as `kind`."""
    return {key: kind(**fields) for key, fields in payload.items()}


@cache
def field_names(kind: type) -> tuple[str, ...]:
    return tuple(item.name for item in fields(kind))


def fields_of(record: Any) -> dict[str, Any]:
    """A dataclass's fields by name, the values shared (not copied): only to serialize at once."""
    return {name: getattr(record, name) for name in field_names(type(record))}


@dataclass
class JobEntry:
    """One clip of the sweep: what it is, and the worker of the latest launch (attempt) that ran it.

    `attempts` counts the launches that sent it to a worker; `error` is the one-line error of a
    latest launch that never started its worker (so the job reads `failed`, not `pending`);
    `spec_sha256` lets every later launch's spec list vouch for it too."""

    output_name: str = ""
    prompt: str = ""
    duration_s: float = 0.0
    model: str = ""
    seed: int = 0
    variant: dict[str, Any] = field(default_factory=dict)
    worker: int | None = None
    host: str | None = None
    launch: str | None = None
    attempts: int = 0
    launched_at: float | None = None
    error: str | None = None
    spec_sha256: str = ""  # of the spec's bytes as the launcher serialized them (`digests`)

    @classmethod
    def of(cls, job: Job, variant: dict[str, Any]) -> JobEntry:
        """`variant` as the caller serialized it (the launcher passes its canonical JSON form)."""
        return cls(job.output_name, job.prompt, job.duration_s, job.model, job.seed, variant)

    @property
    def assigned(self) -> bool:
        return self.worker is not None


@dataclass
class LaunchRecord:
    """One launch. `submitted` is False while its launcher is between writing the manifest and
    hearing back from the backend; one that stays False after its launcher died (`sweep.lock`)
    started at most the workers a poll can see."""

    id: str
    time: float
    jobs: int
    estimate: dict[str, Any] | None = None  # costs.estimate.Estimate.to_dict(), shown beside the bill
    error: str | None = None
    submitted: bool = True  # False from the manifest write before `submit` until the backend answered
    specs_sha256: str = ""  # its spec list's digest (`digests`); empty in manifests older than it


@dataclass
class Manifest:
    sweep: str = ""
    created: float = 0.0
    jobs: dict[str, JobEntry] = field(default_factory=dict)
    launches: list[LaunchRecord] = field(default_factory=list)
    backend: str = ""
    store: dict[str, Any] = field(default_factory=dict)
    config_source: str = ""
    backend_state: dict[str, Any] = field(default_factory=dict)
    backend_settings: dict[str, Any] | None = None  # None: a manifest written before they were recorded
    engine: dict[str, Any] | None = None
    recovery: dict[str, Any] | None = None

    def assigned(self) -> dict[str, JobEntry]:
        """The jobs some launch has sent to a worker."""
        return {job_id: entry for job_id, entry in self.jobs.items() if entry.assigned}

    def hosts(self) -> dict[str, str | None]:
        return {job_id: entry.host for job_id, entry in self.jobs.items()}

    def launch_of(self) -> dict[str, str | None]:
        """Each job's latest attempt: only that attempt's `.failed` counts."""
        return {job_id: entry.launch for job_id, entry in self.jobs.items()}

    def launch_ids(self) -> tuple[str, ...]:
        return tuple(record.id for record in self.launches)

    def launch_record(self, launch_id: str | None) -> LaunchRecord | None:
        return next((record for record in self.launches if record.id == launch_id), None)

    def state_of(self, kind: type[S]) -> S:
        """A backend's own record, empty until its first launch."""
        return kind.from_json(self.backend_state.get(kind.KEY, {}))

    def keep_state(self, state: BackendState | None) -> None:
        """Store what `submit` returned (or `LaunchFailed` carried), replacing that backend's earlier record."""
        if state is not None:
            self.backend_state[state.KEY] = state.to_json()

    def to_json(self) -> dict[str, Any]:
        """`asdict` less its deep copy of every job's variant (most of a 100,000-clip launch)."""
        payload = fields_of(self)
        payload["jobs"] = {job_id: fields_of(entry) for job_id, entry in self.jobs.items()}
        payload["launches"] = [fields_of(record) for record in self.launches]
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Manifest:
        """Raises MusicsweepError naming the first missing or unknown key (a hand edit's, a torn write's)."""
        if not isinstance(payload, dict):
            raise MusicsweepError(f"holds a JSON {type(payload).__name__}, not an object")
        jobs = {}
        known, required = frozenset(field_names(JobEntry)), frozenset(REQUIRED_JOB_KEYS)
        for job_id, entry in _items(payload, "jobs"):
            # one check per entry in C, the one-line error only for an entry that fails it: reading
            # 100,000 entries took 0.90 s with per-key checks in Python, 0.64 s so
            if not (isinstance(entry, dict) and entry.keys() >= required and entry.keys() <= known):
                _refuse_job(job_id, entry)
            jobs[job_id] = JobEntry(**entry)
        launches = [
            _record(LaunchRecord, record, f"launches[{index}]")
            for index, record in enumerate(payload.get("launches", []))
        ]
        keys = ("backend", "store", "config_source", "backend_state", "backend_settings", "engine", "recovery")
        rest = {key: payload[key] for key in keys if key in payload}
        return cls(payload.get("sweep", ""), payload.get("created", 0.0), jobs, launches, **rest)


def _items(payload: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    value = payload.get(key, {})
    if not isinstance(value, dict):
        raise MusicsweepError(f"key '{key}': not an object")
    return list(value.items())


def _refuse_job(job_id: str, entry: Any) -> None:
    """The one-line error for a job entry that is not an object, lacks a key or has an unknown one."""
    if not isinstance(entry, dict):
        raise MusicsweepError(f"key 'jobs.{job_id}': not an object")
    missing = [key for key in REQUIRED_JOB_KEYS if key not in entry]
    if missing:
        raise MusicsweepError(f"key 'jobs.{job_id}.{missing[0]}': missing")
    _record(JobEntry, entry, f"jobs.{job_id}")


def _record(kind: type[R], value: Any, where: str) -> R:
    """`kind(**value)`, or one line naming the key that is not one of `kind`'s fields."""
    if not isinstance(value, dict):
        raise MusicsweepError(f"key '{where}': not an object")
    unknown = [key for key in value if key not in field_names(kind)]
    if unknown:
        raise MusicsweepError(f"key '{where}.{unknown[0]}': unknown")
    return kind(**value)
