"""Whether a WAV counts (musicsweep/store/verify.py): whole by its header and of the job's length."""

from __future__ import annotations

from pathlib import Path

from musicsweep.store.local import LocalStore
from musicsweep.store.verify import expected_wav_size, stored_wav_problem, wav_problem
from tests.helpers import wav_bytes


def test_a_wav_counts_only_when_whole_and_of_the_jobs_length(tmp_path: Path) -> None:
    frames = 16000
    whole = wav_bytes(frames=frames)
    assert len(whole) == expected_wav_size(0.5)
    assert wav_problem(whole[:4096], len(whole), 0.5) is None
    assert wav_problem(whole[:4096], 32768, 0.5) == "32768 bytes, but its header declares 32044"
    assert wav_problem(whole[:4096], len(whole), 0.6) == (
        "16000 frames at 32000 Hz x 1 ch, expected 19200 frames at 32000 Hz mono"
    )
    assert wav_problem(b"garbage", 7, 0.5) == "no WAV header"
    store = LocalStore(tmp_path)
    store.put_bytes("sw/audio/a.wav", whole[:20000])  # a partial object under the full key
    assert stored_wav_problem(store, "sw/audio/a.wav", 0.5) == "20000 bytes, but its header declares 32044"
    assert stored_wav_problem(store, "sw/audio/none.wav", 0.5) == "missing"
