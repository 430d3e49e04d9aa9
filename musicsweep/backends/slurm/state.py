"""What the manifest keeps of a SLURM sweep: each launch's array job and the jobs of each task.

The JSON is `{launch id: {"array_job_id": "123", "tasks": {"0": [job ids]}}}`, as manifests have
always held it under `slurm_arrays`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from musicsweep.manifest import Manifest, records_from_json, records_to_json


@dataclass(frozen=True)
class SlurmArray:
    array_job_id: str
    tasks: dict[str, list[str]]  # task id -> its job ids


@dataclass
class SlurmArrays:
    KEY: ClassVar[str] = "slurm_arrays"
    arrays: dict[str, SlurmArray] = field(default_factory=dict)  # launch id -> its array

    def to_json(self) -> dict[str, Any]:
        return records_to_json(self.arrays)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Self:
        return cls(records_from_json(SlurmArray, payload))

    def array_ids(self) -> list[str]:
        return sorted({array.array_job_id for array in self.arrays.values()})

    def task_of_jobs(self, manifest: Manifest) -> dict[str, str]:
        """job_id -> `ARRAY_TASK` of the launch that last submitted it."""
        tasks: dict[str, str] = {}
        for job_id, entry in manifest.jobs.items():
            array = self.arrays.get(entry.launch or "")
            if array is None:
                continue
            for task_id, job_ids in array.tasks.items():
                if job_id in job_ids:
                    tasks[job_id] = f"{array.array_job_id}_{task_id}"
        return tasks


def tasks_of_launch(manifest: Manifest, launch_id: str) -> dict[str, list[str]]:
    """Task id -> the jobs a launch gave it (task N runs worker N's shard), from the manifest alone."""
    tasks: dict[str, list[str]] = {}
    for job_id, entry in manifest.jobs.items():
        if entry.launch == launch_id and entry.worker is not None:
            tasks.setdefault(str(entry.worker), []).append(job_id)
    return tasks
