"""Audio checks on crafted WAVs: clean, silent, clipped, too short, NaN; and the images they feed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile

from musicsweep.report.audio_checks import DURATION_TOLERANCE_S, check_wav, full_scale
from musicsweep.report.images import FLOOR_DB, HEIGHT_PX, WIDTH_PX, log_mel, render_clip_image

RATE = 32000


def tone(seconds: float, amplitude: float = 0.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * RATE))) / RATE
    return amplitude * np.sin(2 * np.pi * hz * t)


def write(path: Path, samples: np.ndarray, subtype: str = "PCM_16") -> Path:
    soundfile.write(str(path), samples, RATE, subtype=subtype, format="WAV")
    return path


def test_clean_clip_passes(tmp_path: Path) -> None:
    check = check_wav(write(tmp_path / "clean.wav", tone(2.0)), 2.0)
    assert check.flags == {}
    assert check.duration_s == pytest.approx(2.0)
    assert check.peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=0.01)
    assert check.rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)


@pytest.mark.parametrize("samples", [np.zeros(RATE * 2), tone(2.0, amplitude=10 ** (-70 / 20))], ids=["zeros", "-73dB"])
def test_silent_clip_is_flagged(tmp_path: Path, samples: np.ndarray) -> None:
    check = check_wav(write(tmp_path / "silent.wav", samples), 2.0)
    assert set(check.flags) == {"silent"}
    assert check.rms_dbfs < -60


def test_quiet_but_audible_clip_is_not_silent(tmp_path: Path) -> None:
    check = check_wav(write(tmp_path / "quiet.wav", tone(2.0, amplitude=10 ** (-50 / 20))), 2.0)
    assert "silent" not in check.flags


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_clipped_clip_is_flagged(tmp_path: Path, subtype: str) -> None:
    samples = np.clip(tone(2.0, amplitude=1.5), -1.0, 1.0)
    check = check_wav(write(tmp_path / "clipped.wav", samples, subtype), 2.0)
    assert set(check.flags) == {"clipped"}
    assert check.peak_dbfs >= 20 * math.log10(full_scale(subtype))


def test_pcm16_pinned_at_the_positive_rail_is_clipped(tmp_path: Path) -> None:
    """+32767 reads as -0.0003 dBFS, yet it is the loudest value PCM_16 can store."""
    check = check_wav(write(tmp_path / "rail.wav", np.clip(tone(2.0, amplitude=1.5), -0.5, 1.0)), 2.0)
    assert check.peak_dbfs < 0 and set(check.flags) == {"clipped"}


def test_float_clip_above_full_scale_is_flagged(tmp_path: Path) -> None:
    check = check_wav(write(tmp_path / "hot.wav", tone(2.0, amplitude=1.4), "FLOAT"), 2.0)
    assert check.clipped and check.peak_dbfs == pytest.approx(20 * math.log10(1.4), abs=0.01)


def test_peak_just_below_full_scale_passes(tmp_path: Path) -> None:
    check = check_wav(write(tmp_path / "loud.wav", tone(2.0, amplitude=10 ** (-1 / 20))), 2.0)
    assert check.flags == {}


def test_too_short_and_too_long_clips_are_flagged(tmp_path: Path) -> None:
    short = check_wav(write(tmp_path / "short.wav", tone(1.9)), 2.0)
    assert set(short.flags) == {"too short"}
    assert "1.900 s, 2 s requested" in short.flags["too short"]
    long = check_wav(write(tmp_path / "long.wav", tone(2.05)), 2.0)
    assert set(long.flags) == {"too long"}


def test_duration_within_tolerance_passes(tmp_path: Path) -> None:
    inside = DURATION_TOLERANCE_S - 0.002
    assert check_wav(write(tmp_path / "a.wav", tone(2.0 - inside)), 2.0).flags == {}
    assert check_wav(write(tmp_path / "b.wav", tone(2.0 + inside)), 2.0).flags == {}


def test_nan_in_float_wav_is_flagged(tmp_path: Path) -> None:
    samples = tone(2.0)
    samples[1000:1100] = np.nan
    check = check_wav(write(tmp_path / "nan.wav", samples, "FLOAT"), 2.0)
    assert set(check.flags) == {"NaN"}
    assert math.isfinite(check.peak_dbfs) and math.isfinite(check.rms_dbfs)


def test_all_nan_clip_is_nan_and_silent(tmp_path: Path) -> None:
    check = check_wav(write(tmp_path / "allnan.wav", np.full(RATE * 2, np.nan), "FLOAT"), 2.0)
    assert set(check.flags) == {"NaN", "silent"}


def test_stereo_clip_is_measured_over_both_channels(tmp_path: Path) -> None:
    stereo = np.stack([np.zeros(RATE * 2), np.clip(tone(2.0, amplitude=2.0), -1, 1)], axis=1)
    check = check_wav(write(tmp_path / "stereo.wav", stereo, "FLOAT"), 2.0)
    assert set(check.flags) == {"clipped"}
    assert check.duration_s == pytest.approx(2.0)


@pytest.mark.parametrize("seconds", [0.0, 0.01, 3.0])
def test_image_of_any_clip_is_a_png_of_the_right_size(tmp_path: Path, seconds: float) -> None:
    samples = tone(seconds)
    if samples.size:
        samples[: samples.size // 2] = np.nan
    path = tmp_path / "img" / "clip.png"
    render_clip_image(samples, RATE, path)
    from matplotlib.image import imread

    assert imread(path).shape[:2] == (HEIGHT_PX, WIDTH_PX)


def test_log_mel_puts_a_tone_in_the_right_band() -> None:
    low, high = log_mel(tone(1.0, hz=200.0), RATE), log_mel(tone(1.0, hz=8000.0), RATE)
    assert low.shape[0] == 64
    assert low.mean(axis=1).argmax() < high.mean(axis=1).argmax()


def test_log_mel_is_absolute_so_silence_stays_dark() -> None:
    assert log_mel(np.zeros(RATE), RATE).max() == FLOOR_DB
    assert log_mel(tone(1.0, amplitude=1.0), RATE).max() == pytest.approx(0.0, abs=3.0)
    assert log_mel(tone(1.0, amplitude=0.01), RATE).max() == pytest.approx(-40.0, abs=3.0)
