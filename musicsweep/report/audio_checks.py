"""Checks on a generated WAV itself: right length, no clipping, not silent, no NaN.

A clip can be `.done` and still be useless (a decoder that emitted NaN, a normaliser that
clipped, a continuation that came out short), so the report measures the audio, not the job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DURATION_TOLERANCE_S = 0.020
SILENCE_DBFS = -60.0

# The largest positive value an integer subtype can store, as a fraction of full scale: a PCM_16
# clip pinned at +32767 has clipped even though its peak reads -0.0003 dBFS.
_INTEGER_BITS = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}


def dbfs(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf


def full_scale(subtype: str) -> float:
    """The value at or above which a sample counts as clipped, for a soundfile subtype."""
    bits = _INTEGER_BITS.get(subtype)
    return 1.0 if bits is None else (2 ** (bits - 1) - 1) / 2 ** (bits - 1)


@dataclass(frozen=True)
class AudioCheck:
    """What was measured on one clip, and the flags it raises."""

    duration_s: float
    requested_s: float
    peak_dbfs: float
    rms_dbfs: float
    has_nan: bool
    clipped: bool

    @property
    def duration_error_s(self) -> float:
        return self.duration_s - self.requested_s

    @property
    def wrong_length(self) -> bool:
        return abs(self.duration_error_s) > DURATION_TOLERANCE_S

    @property
    def silent(self) -> bool:
        return self.rms_dbfs < SILENCE_DBFS

    @property
    def flags(self) -> dict[str, str]:
        """Flag name -> a short explanation; empty when the clip passes every check."""
        flags = {}
        if self.wrong_length:
            kind = "too short" if self.duration_error_s < 0 else "too long"
            flags[kind] = f"{self.duration_s:.3f} s, {self.requested_s:g} s requested"
        if self.clipped:
            flags["clipped"] = f"peak {self.peak_dbfs:.2f} dBFS"
        if self.silent:
            flags["silent"] = f"RMS {self.rms_dbfs:.1f} dBFS"
        if self.has_nan:
            flags["NaN"] = "samples are not numbers"
        return flags


def check_samples(samples: np.ndarray, sampling_rate: int, requested_s: float, clip_level: float = 1.0) -> AudioCheck:
    """Measure `samples` (frames, or frames x channels, in [-1, 1]); NaN samples are left out of peak and RMS."""
    values = np.asarray(samples, dtype=np.float64)
    frames = values.shape[0]
    nan = np.isnan(values)
    finite = values[np.isfinite(values)]
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    rms = float(np.sqrt(np.mean(np.square(finite)))) if finite.size else 0.0
    has_inf = finite.size + int(nan.sum()) < values.size
    return AudioCheck(
        duration_s=frames / sampling_rate,
        requested_s=float(requested_s),
        peak_dbfs=math.inf if has_inf else dbfs(peak),
        rms_dbfs=dbfs(rms),
        has_nan=bool(nan.any()),
        clipped=has_inf or peak >= clip_level,
    )


def read_wav(path: Path) -> tuple[np.ndarray, int, float]:
    """(samples as frames x channels float64, sampling rate, clip level) of a WAV file."""
    import soundfile

    with soundfile.SoundFile(str(path)) as handle:
        samples = handle.read(dtype="float64", always_2d=True)
        return samples, handle.samplerate, full_scale(handle.subtype)


def check_wav(path: Path, requested_s: float) -> AudioCheck:
    samples, sampling_rate, clip_level = read_wav(path)
    return check_samples(samples, sampling_rate, requested_s, clip_level)
