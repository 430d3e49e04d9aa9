"""Clips generated but not yet safely in the store, kept on this host's disk.

A clip is paid for once it is generated. It goes to the spool before its upload and leaves only
after its `.done`, so a store outage, a full store or a kill between the two loses nothing: the
next worker on this host uploads the spooled clip instead of generating it again. Each entry is
the WAV plus a small JSON of what its cost row needs (generation time, batch size, and the window
a resumed clip continued after), so the worker that uploads it writes the row the generator would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from musicsweep.atomic import atomic_write_bytes, atomic_write_json
from musicsweep.job import Job
from musicsweep.store.verify import HEADER_BYTES, wav_problem


@dataclass(frozen=True)
class SpooledClip:
    wav: Path
    generation_time_s: float
    batch_size: int
    resumed_from_window: int | None = None


class Spool:
    """`{work_dir}/spool/{output_name}` and `{output_name}.json`, one pair per clip not yet done."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _paths(self, job: Job) -> tuple[Path, Path]:
        wav = self.folder / job.output_name
        return wav, wav.with_name(wav.name + ".json")

    def put(
        self, job: Job, wav_bytes: bytes, generation_time_s: float, batch_size: int, resumed_from: int | None = None
    ) -> SpooledClip:
        """The WAV first, then its record: a record is never there without its whole WAV."""
        wav, meta = self._paths(job)
        atomic_write_bytes(wav, wav_bytes)
        record = {"generation_time_s": generation_time_s, "batch_size": batch_size, "resumed_from_window": resumed_from}
        atomic_write_json(meta, record)
        return SpooledClip(wav, generation_time_s, batch_size, resumed_from)

    def get(self, job: Job) -> SpooledClip | None:
        """The spooled clip of `job` if it is whole and of the job's length; a broken entry is dropped."""
        wav, meta = self._paths(job)
        if not meta.exists():
            return None
        try:
            record = json.loads(meta.read_text())
            with open(wav, "rb") as handle:
                header = handle.read(HEADER_BYTES)
            if wav_problem(header, wav.stat().st_size, job.wav_seconds, job.channels) is None:
                resumed_from = record.get("resumed_from_window")  # absent in entries of older workers
                timing = float(record["generation_time_s"]), int(record["batch_size"])
                return SpooledClip(wav, *timing, None if resumed_from is None else int(resumed_from))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.remove(job)
        return None

    def remove(self, job: Job) -> None:
        for path in self._paths(job):
            path.unlink(missing_ok=True)
