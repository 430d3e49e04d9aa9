"""What the manifest keeps of a Ray sweep: each launch's Ray job and the jobs of each worker.

The JSON is `{launch id: {"job_id": "musicsweep-...", "namespace": "...", "workers": {"0": [job ids]}}}`
under `ray_jobs`. A worker is the actor `{launch id}.worker_N` in its sweep's namespace, so one state
API call lists every worker of the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from musicsweep.manifest import Manifest, records_from_json, records_to_json


@dataclass(frozen=True)
class RayJob:
    job_id: str  # the Jobs API's submission id
    namespace: str  # the actors' namespace: one per sweep
    workers: dict[str, list[str]]  # worker id -> its job ids


@dataclass(frozen=True)
class WorkerRef:
    """One worker of one launch: its job's submission id and its actor's name."""

    launch_id: str
    job_id: str
    worker_id: int

    @property
    def actor(self) -> str:
        return actor_name(self.launch_id, self.worker_id)


def actor_name(launch_id: str, worker_id: int) -> str:
    return f"{launch_id}.worker_{worker_id}"


def sweep_namespace(sweep: str) -> str:
    return f"musicsweep-{sweep}"


@dataclass
class RayJobs:
    KEY: ClassVar[str] = "ray_jobs"
    jobs: dict[str, RayJob] = field(default_factory=dict)  # launch id -> its Ray job

    def to_json(self) -> dict[str, Any]:
        return records_to_json(self.jobs)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Self:
        return cls(records_from_json(RayJob, payload))

    def job_ids(self) -> list[str]:
        return sorted(job.job_id for job in self.jobs.values())

    def worker_of_jobs(self, manifest: Manifest) -> dict[str, WorkerRef | None]:
        """job_id -> the worker of the launch that last sent it; None while that launch is not
        submitted yet (its record is written once `submit` returns)."""
        workers: dict[str, WorkerRef | None] = {}
        for job_id, entry in manifest.jobs.items():
            if not entry.assigned:
                continue
            job = self.jobs.get(entry.launch or "")
            workers[job_id] = None if job is None else WorkerRef(entry.launch or "", job.job_id, int(entry.worker))
        return workers
