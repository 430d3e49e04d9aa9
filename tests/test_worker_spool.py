"""The worker's spool (musicsweep/worker/spool.py): a generated clip waits there, whole, until it is delivered."""

from __future__ import annotations

from pathlib import Path

from musicsweep.job import Job
from musicsweep.worker.spool import Spool
from tests.helpers import wav_bytes


def job(duration_s: float = 0.5) -> Job:
    return Job("sw", "lofi piano", duration_s, "tiny", 1, "lofi")


def test_spool_keeps_whole_clips_and_drops_broken_ones(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    clip = job()
    spool.put(clip, wav_bytes(frames=16000), 1.25, 4, resumed_from=3)
    entry = spool.get(clip)
    # what its cost row needs, for whichever worker uploads it: a resumed clip's row says so
    assert entry is not None and (entry.generation_time_s, entry.batch_size, entry.resumed_from_window) == (1.25, 4, 3)
    record = tmp_path / "spool" / f"{clip.output_name}.json"
    record.write_text('{"generation_time_s": 1.25, "batch_size": 4}')  # an older worker's entry
    assert spool.get(clip).resumed_from_window is None
    entry.wav.write_bytes(wav_bytes(frames=16000)[:1000])  # torn
    assert spool.get(clip) is None and list((tmp_path / "spool").iterdir()) == []
