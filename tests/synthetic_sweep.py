"""Write a finished-looking sweep folder without running workers: manifest, WAVs, cost rows, markers.

The report tests and `benchmarks/report.py` use it to lay out exactly the clips they need (silent,
clipped, short, NaN, failed, unfinished) in milliseconds instead of generating them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from musicsweep.atomic import atomic_write_json, atomic_write_text
from musicsweep.costs.rows import CostRow, merge_cost_report
from musicsweep.job import Job
from musicsweep.layout import SweepDir
from musicsweep.manifest import JobEntry, Manifest

RATE = 32000
HOURLY_USD = 0.5


@dataclass
class FakeClip:
    """One clip to lay down. `samples=None` means a seeded noise-and-tone clip of the right length."""

    variant: dict[str, Any]
    state: str = "done"  # done | failed | unfinished
    samples: np.ndarray | None = None
    subtype: str = "PCM_16"
    error: str = ""
    generation_time_s: float = 0.25


def music_like(seconds: float, seed: int) -> np.ndarray:
    """A tone with a few harmonics under quiet noise: something with visible spectral structure."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    base = 110.0 * 2 ** (rng.integers(0, 24) / 12)
    signal = sum(np.sin(2 * np.pi * base * k * t) / k for k in range(1, 5))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t) ** 2
    return 0.3 * signal * envelope + 0.02 * rng.standard_normal(t.size)


def write_synthetic_sweep(sweeps_dir: Path, name: str, clips: list[FakeClip], backend: str = "local") -> SweepDir:
    """Lay the clips down as auto_pull would have left them; returns the sweep folder."""
    sweep = SweepDir(Path(sweeps_dir), name)
    manifest = Manifest(sweep=name, created=time.time(), backend=backend)
    for index, clip in enumerate(clips):
        job = Job.from_variant(clip.variant, name, f"clip {index}")
        entry = JobEntry.of(job, dict(clip.variant))
        entry.host, entry.worker, entry.launch = "localhost", 0, "L1"
        manifest.jobs[job.job_id] = entry
        paths = sweep.job(job)
        if clip.state == "failed":
            atomic_write_text(sweep.local_file(paths.failed_key("L1")), clip.error)
        if clip.state != "done":
            continue
        samples = music_like(job.duration_s, job.seed) if clip.samples is None else clip.samples
        sweep.audio.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(sweep.audio / job.output_name), samples, RATE, subtype=clip.subtype, format="WAV")
        row = CostRow(
            s3_filename=job.output_name,
            prompt=job.prompt,
            requested_duration_s=job.duration_s,
            generation_time_s=clip.generation_time_s,
            estimated_cost_usd=round(clip.generation_time_s * HOURLY_USD / 3600, 8),
            model=job.model,
            seed=job.seed,
            job_id=job.job_id,
            host="localhost",
            hourly_cost_usd=HOURLY_USD,
            audio_seconds=job.duration_s,
        )
        atomic_write_json(sweep.local_file(paths.cost_key), row.to_dict())
        atomic_write_text(sweep.local_file(paths.done_key), "done\n")
    lifetime = {"host": "localhost", "worker_id": 0, "start": 1000.0, "end": 1072.0, "hourly_cost_usd": HOURLY_USD}
    atomic_write_json(sweep.root / "workers" / "worker_0.json", lifetime)
    sweep.write_manifest(manifest)
    merge_cost_report(sweep)
    return sweep
