"""Output levels: peak to `peak_dbfs` (default -1 dBFS), integrated loudness (ITU-R BS.1770), or none.

No mode ever clips: `loudness` raises the level only as far as the `peak_dbfs` ceiling allows, and
`none` clamps to [-1, 1] so that the 16-bit WAV writer never wraps around.
"""

from __future__ import annotations

import numpy as np

from musicsweep.config import EngineConfig

_BLOCK_S = 0.4
_BLOCK_STEP_S = 0.1
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0


def normalize(clip: np.ndarray, config: EngineConfig, sampling_rate: int) -> np.ndarray:
    """Return `clip` as float32 at the level the config asks for."""
    clip = np.nan_to_num(clip.astype(np.float32))
    if config.normalize == "none":
        return np.clip(clip, -1.0, 1.0)
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    if peak == 0.0:
        return clip
    ceiling = 10 ** (config.peak_dbfs / 20)
    gain = ceiling / peak
    if config.normalize == "loudness":
        loudness = integrated_loudness(clip, sampling_rate)
        if np.isfinite(loudness):
            gain = min(gain, 10 ** ((config.loudness_lufs - loudness) / 20))
    return (clip * gain).astype(np.float32)


def _biquad_response(b: tuple[float, ...], a: tuple[float, ...], omega: np.ndarray) -> np.ndarray:
    z = np.exp(-1j * omega)
    return (b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2)


def k_weighting_response(sampling_rate: int, omega: np.ndarray) -> np.ndarray:
    """BS.1770 K-weighting (high shelf, then high pass) at any rate, with libebur128's bilinear design."""
    k = np.tan(np.pi * 1681.974450955533 / sampling_rate)
    q = 0.7071752369554196
    vh = 10 ** (3.999843853973347 / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0)
    shelf_a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    k = np.tan(np.pi * 38.13547087613982 / sampling_rate)
    q = 0.5003270373253953
    a0 = 1 + k / q + k * k
    highpass_a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    return _biquad_response(shelf_b, shelf_a, omega) * _biquad_response((1.0, -2.0, 1.0), highpass_a, omega)


def integrated_loudness(clip: np.ndarray, sampling_rate: int) -> float:
    """Gated integrated loudness in LUFS of a clip, (samples,) or (samples, channels) with the
    channels' powers summed (BS.1770's front channels); -inf for silence or clips under one block.

    The K-weighting filter is applied in the frequency domain (one FFT), which needs no scipy.
    """
    block = int(round(_BLOCK_S * sampling_rate))
    step = int(round(_BLOCK_STEP_S * sampling_rate))
    samples = clip.shape[0]
    if samples < block:
        return float("-inf")
    channels = clip.reshape(samples, -1).T.astype(np.float64)
    spectrum = np.fft.rfft(channels, axis=-1)
    omega = 2 * np.pi * np.fft.rfftfreq(samples)
    weighted = np.fft.irfft(spectrum * k_weighting_response(sampling_rate, omega), n=samples, axis=-1)
    cumulative = np.concatenate([[0.0], np.cumsum((weighted**2).sum(axis=0))])
    starts = np.arange(0, samples - block + 1, step)
    power = (cumulative[starts + block] - cumulative[starts]) / block
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * np.log10(power)
    gated = power[loudness > _ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return float("-inf")
    relative_gate = -0.691 + 10 * np.log10(gated.mean()) + _RELATIVE_GATE_LU
    gated = gated[-0.691 + 10 * np.log10(gated) > relative_gate]
    return float(-0.691 + 10 * np.log10(gated.mean()))
