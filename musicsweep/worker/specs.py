"""Load a worker's job specs one by one, so one corrupt spec fails one job, not the worker.

A spec that cannot be unpickled (truncated by a full disk, a killed copy) is reported with a
one-line reason naming its file; its job id is the file's stem (`jobs/{job_id}.pkl`), which is
all its `.failed` marker needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle

from musicsweep.job import Job


@dataclass
class LoadedSpecs:
    jobs: list[Job] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # job id -> one-line reason

    def sweep(self, work_dir: Path) -> str:
        """The sweep's name: from any good spec, else the work folder (`runs/{sweep}`)."""
        return self.jobs[0].sweep if self.jobs else Path(work_dir).name


def load_specs(paths: list[Path]) -> LoadedSpecs:
    loaded = LoadedSpecs()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                job = cloudpickle.load(handle)
            if not isinstance(job, Job):
                raise TypeError(f"holds a {type(job).__name__}, not a Job")
        except Exception as error:  # noqa: BLE001 - any unreadable spec fails only its own job
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            loaded.broken[Path(path).stem] = f"{path}: cannot load job spec: {reason}"
            continue
        loaded.jobs.append(job)
    return loaded
