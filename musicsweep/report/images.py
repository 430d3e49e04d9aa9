"""One small PNG per clip: its waveform above its log-mel spectrogram, drawn with matplotlib (Agg).

Only `matplotlib.figure.Figure` is used, never pyplot, so no GUI backend or global state is
touched and the function is safe to run in worker processes.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np

from musicsweep.atomic import atomic_write_bytes

WIDTH_PX, HEIGHT_PX, DPI = 360, 180, 100
N_FFT = 1024
N_MELS = 64
MAX_FRAMES = 720  # about two spectrogram columns per pixel; bounds the work for long clips
FLOOR_DB = -80.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


@cache
def mel_filterbank(sampling_rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular filters evenly spaced on the mel scale, shape (n_mels, n_fft // 2 + 1)."""
    bins = np.linspace(0.0, sampling_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(sampling_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel(mono: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Log-mel power in dB relative to a full-scale sine, shape (n_mels, frames).

    An absolute reference (not the clip's own maximum) keeps a silent clip dark and lets quiet
    and loud clips be told apart side by side.
    """
    signal = np.asarray(mono, dtype=np.float32)
    if signal.size < N_FFT:
        signal = np.pad(signal, (0, N_FFT - signal.size))
    hop = max(N_FFT // 4, (signal.size - N_FFT) // MAX_FRAMES + 1)
    starts = np.arange(0, signal.size - N_FFT + 1, hop)
    window = np.hanning(N_FFT).astype(np.float32)
    frames = signal[starts[:, None] + np.arange(N_FFT)] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = mel_filterbank(sampling_rate) @ power.T
    full_scale = (window.sum() / 2.0) ** 2
    return np.clip(10.0 * np.log10(np.maximum(mel / full_scale, 1e-12)), FLOOR_DB, 0.0)


def envelope(mono: np.ndarray, columns: int = WIDTH_PX * 2) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each of `columns` equal slices: a waveform drawn without plotting every sample."""
    if mono.size == 0:
        return np.zeros(1), np.zeros(1)
    slices = np.array_split(mono, min(columns, mono.size))
    return np.array([s.min() for s in slices]), np.array([s.max() for s in slices])


def render_clip_image(samples: np.ndarray, sampling_rate: int, path: Path) -> None:
    """Write the waveform + log-mel PNG of `samples` (frames or frames x channels) to `path`."""
    from matplotlib.figure import Figure

    mono = np.asarray(samples, dtype=np.float64)
    mono = mono.mean(axis=1) if mono.ndim == 2 else mono
    mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    wave_axes = figure.add_axes((0.0, 0.62, 1.0, 0.38))
    mel_axes = figure.add_axes((0.0, 0.0, 1.0, 0.6))
    low, high = envelope(mono)
    wave_axes.fill_between(np.arange(low.size), low, high, color="#2b6cb0", linewidth=0.5)
    wave_axes.set_xlim(0, max(low.size - 1, 1))
    wave_axes.set_ylim(-1.0, 1.0)
    wave_axes.axhline(0.0, color="#a0aec0", linewidth=0.4)
    mel_axes.imshow(log_mel(mono, sampling_rate), origin="lower", aspect="auto", cmap="magma", vmin=FLOOR_DB, vmax=0)
    for axes in (wave_axes, mel_axes):
        axes.set_axis_off()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
