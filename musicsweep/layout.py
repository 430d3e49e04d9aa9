"""The local sweep folder: manifest, specs, scripts, logs and pulled results.

Its layout mirrors the store's key layout (`{sweep}/audio`, `costs`, `markers`, `logs`), so that
with a local store the worker writes straight into it and nothing needs copying.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cloudpickle

from musicsweep.atomic import atomic_write_bytes, atomic_write_json
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job, JobPaths, WorkerPaths


@dataclass(frozen=True)
class SweepDir:
    """`{sweeps_dir}/{sweep}`: owns every launch-side path of a sweep."""

    sweeps_dir: Path
    name: str

    @property
    def root(self) -> Path:
        return self.sweeps_dir / self.name

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def audio(self) -> Path:
        return self.root / "audio"

    @property
    def cost_report(self) -> Path:
        return self.root / "cost_report.csv"

    @property
    def cost_summary(self) -> Path:
        return self.root / "cost_summary.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def job(self, job: Job) -> JobPaths:
        return JobPaths.of(job, self.root)

    def worker(self, worker_id: int) -> WorkerPaths:
        return WorkerPaths(self.root, self.name, worker_id)

    def local_file(self, key: str) -> Path:
        """Where a store key `{sweep}/...` lands when pulled."""
        return self.sweeps_dir / key

    def write_spec(self, job: Job) -> Path:
        path = self.job(job).spec
        atomic_write_bytes(path, cloudpickle.dumps(job))
        return path

    def read_spec(self, job_id: str) -> Job:
        with open(self.root / "jobs" / f"{job_id}.pkl", "rb") as handle:
            return cloudpickle.load(handle)

    def read_manifest(self) -> dict:
        try:
            return json.loads(self.manifest.read_text())
        except FileNotFoundError:
            raise MusicsweepError(f"{self.manifest}: no such sweep (run it first)") from None

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest, manifest)


def latest_sweep(sweeps_dir: Path) -> str:
    """The most recently launched sweep, for `auto_pull` with no name."""
    manifests = sorted(sweeps_dir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not manifests:
        raise MusicsweepError(f"{sweeps_dir}: no sweeps found")
    return manifests[-1].parent.name
