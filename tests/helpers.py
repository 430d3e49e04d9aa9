"""Test helpers shared by the backend tests."""

from __future__ import annotations

import time
import wave
from pathlib import Path

from musicsweep.backends import get_backend
from musicsweep.cli.auto_pull import OrphanTracker, poll_once
from musicsweep.config import load_config
from musicsweep.layout import SweepDir
from musicsweep.states import FINISHED_STATES


def wait_for_sweep(name: str, timeout_s: float = 240, interval_s: float = 1.0) -> dict[str, str]:
    """Poll like auto_pull until every job is finished; returns the final states."""
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name)
    manifest = sweep.read_manifest()
    backend = get_backend(manifest.backend, config)
    deadline = time.monotonic() + timeout_s
    orphans = OrphanTracker()
    while True:
        states = poll_once(sweep, manifest, backend, orphans)
        if all(state in FINISHED_STATES for state in states.values()):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep {name} not finished after {timeout_s}s: {states}")
        time.sleep(interval_s)


def wav_info(path: Path) -> tuple[int, int, int]:
    """(sampling rate, channels, frames) of a WAV file."""
    with wave.open(str(path)) as handle:
        return handle.getframerate(), handle.getnchannels(), handle.getnframes()
