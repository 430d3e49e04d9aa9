"""Test helpers shared by the backend tests."""

from __future__ import annotations

import struct
import subprocess
import time
import wave
from pathlib import Path

from musicsweep.backends import get_backend
from musicsweep.config import load_config
from musicsweep.layout import SweepDir
from musicsweep.states import FINISHED_STATES
from musicsweep.sweep.follow import poll_once
from musicsweep.sweep.trackers import OrphanTracker


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


def wav_bytes(fill: bytes = b"\0", frames: int = 28, sampling_rate: int = 32000) -> bytes:
    """A 16-bit mono WAV whose samples are `fill` bytes (100 bytes by default): whole by its header."""
    data = fill * (2 * frames)
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sampling_rate, 2 * sampling_rate, 2, 16)
    )
    return header + b"data" + struct.pack("<I", len(data)) + data


def wait_for_exit(pid: int, timeout_s: float = 60) -> None:
    """A worker also uploads its lifetime record and log after its last `.done`: wait for that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
        if not state or state.startswith("Z"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"worker script {pid} still running after {timeout_s}s")


def window_lines(log_text: str) -> list[str]:
    """The `window i/n` of each window the workers generated, from their log lines."""
    return [line.split("] window ", 1)[1].split(" ", 1)[0] for line in log_text.splitlines() if "] window " in line]


def batch_seconds(log_text: str) -> list[float]:
    """Each batch's generation time, from the workers' `batch of N x Ds in Ts` log lines."""
    return [float(line.rsplit(" in ", 1)[1].split("s ")[0]) for line in log_text.splitlines() if "] batch of " in line]
