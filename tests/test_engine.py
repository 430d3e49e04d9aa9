"""The engine on the tiny model: batching, reproducibility, levels, device/dtype, cache-ahead."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from musicsweep.config import EngineConfig
from musicsweep.engine import load_engine
from musicsweep.engine import loading as loading_module
from musicsweep.engine.cacheahead import fetch_model
from musicsweep.engine.normalize import integrated_loudness, normalize
from musicsweep.errors import MusicsweepError
from musicsweep.job import GenerationParams

RATE = 32000
PEAK = 10 ** (-1 / 20)


@pytest.fixture(scope="module")
def engine():
    return load_engine("tiny", EngineConfig())


def assert_valid(clip: np.ndarray, duration_s: float) -> None:
    assert clip.dtype == np.float32
    assert clip.shape == (int(round(duration_s * RATE)),)
    assert np.isfinite(clip).all()
    assert np.max(np.abs(clip)) == pytest.approx(PEAK, rel=1e-4)


def test_batched_and_sequential_generation_give_valid_clips(engine):
    params = GenerationParams()
    batched = engine.generate(["warm piano", "dark synth", "warm piano"], [7, 8, 7], 2.0, params)
    (alone,) = engine.generate(["warm piano"], [7], 2.0, params)
    for clip in [*batched, alone]:
        assert_valid(clip, 2.0)
    assert not np.array_equal(batched[0], batched[1])


def test_a_seed_reproduces_the_same_audio_in_any_order(engine):
    params = GenerationParams()
    first = engine.generate(["lofi beat", "ambient pad"], [1, 2], 2.0, params)
    again = engine.generate(["lofi beat", "ambient pad"], [1, 2], 2.0, params)
    reordered = engine.generate(["ambient pad", "lofi beat"], [2, 1], 2.0, params)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    # each clip draws from its own stream (tests/test_streams.py has batches of 8 and resumes)
    assert np.array_equal(first[0], reordered[1]) and np.array_equal(first[1], reordered[0])


def test_exact_length_when_duration_is_not_a_whole_frame(engine):
    (clip,) = engine.generate(["drums"], [3], 2.013, GenerationParams())
    assert_valid(clip, 2.013)


def test_tiny_model_load_is_silent_about_its_special_token_ids(capfd):
    load_engine("tiny", EngineConfig())
    assert "integer within the vocabulary" not in capfd.readouterr().err


def test_peak_normalisation_and_none():
    clip = 0.3 * np.sin(np.linspace(0, 200, RATE)).astype(np.float32)
    assert np.max(np.abs(normalize(clip, EngineConfig(), RATE))) == pytest.approx(PEAK, rel=1e-5)
    loud = np.array([2.0, -3.0, 0.5], dtype=np.float32)
    assert normalize(loud, EngineConfig(normalize="none"), RATE).tolist() == [1.0, -1.0, 0.5]
    silent = np.zeros(100, dtype=np.float32)
    assert not normalize(silent, EngineConfig(), RATE).any()


def sine(frequency: float, amplitude: float, seconds: float = 3.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [32000, 48000])
def test_loudness_of_a_full_scale_997_hz_sine_is_minus_3_lufs(rate):
    """The BS.1770 reference: a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS."""
    assert integrated_loudness(sine(997, 1.0, rate=rate), rate) == pytest.approx(-3.01, abs=0.05)


def test_loudness_mode_reaches_the_target_and_never_exceeds_the_peak_ceiling():
    quiet = sine(440, 0.01)
    out = normalize(quiet, EngineConfig(normalize="loudness", loudness_lufs=-23.0), RATE)
    assert integrated_loudness(out, RATE) == pytest.approx(-23.0, abs=0.05)
    capped = normalize(quiet, EngineConfig(normalize="loudness", loudness_lufs=0.0), RATE)
    assert np.max(np.abs(capped)) == pytest.approx(PEAK, rel=1e-5)


def test_device_and_dtype_choice(monkeypatch):
    import torch

    auto = EngineConfig()
    assert loading_module.pick_dtype(auto, "cpu", tiny=True) == torch.float32
    assert loading_module.pick_dtype(EngineConfig(dtype="float16"), "cpu") == torch.float16
    monkeypatch.setattr(loading_module, "cpu_has_native_bf16", lambda: True)
    assert loading_module.pick_dtype(auto, "cpu") == torch.bfloat16
    monkeypatch.setattr(loading_module, "cpu_has_native_bf16", lambda: False)
    assert loading_module.pick_dtype(auto, "cpu") == torch.float32
    assert loading_module.pick_device(EngineConfig(device="cpu")) == "cpu"
    assert loading_module.pick_device(auto) == ("cuda" if torch.cuda.is_available() else "cpu")


def populate_hub_cache(hf_home: Path, repo_id: str, model_dir: Path) -> None:
    """Lay out a snapshot the way huggingface_hub's cache does, so offline lookups find it."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.mark.heavy
def test_cache_ahead_loads_a_cached_hub_model_offline(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    populate_hub_cache(tmp_path / "hf", "example/tiny-musicgen", tiny_model_dir)
    source = fetch_model("example/tiny-musicgen", str(tmp_path / "hf"))
    assert Path(source).is_relative_to(tmp_path / "hf" / "hub")
    engine = load_engine("example/tiny-musicgen", EngineConfig(), source)
    (clip,) = engine.generate(["bass"], [1], 1.0, GenerationParams())
    assert_valid(clip, 1.0)


def test_cache_ahead_of_an_unreachable_model_fails_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MusicsweepError) as caught:
        fetch_model("nobody/no-such-musicgen", str(tmp_path / "hf"))
    message = str(caught.value)
    assert "\n" not in message
    assert "'nobody/no-such-musicgen'" in message and "HF_HUB_OFFLINE=1" in message
    with pytest.raises(MusicsweepError, match="no config.json"):
        fetch_model(str(tmp_path / "missing-folder"), None)


def test_auto_batch_size_follows_free_gpu_memory(engine, monkeypatch):
    import torch

    from musicsweep.engine.batching import AUTO_MAX, CPU_BATCH, auto_batch_size

    model = engine.loaded.model
    assert auto_batch_size(model, "cpu", torch.float32, 1503) == CPU_BATCH
    # tiny decoder: 2 layers x 32 hidden x 1503 frames x 4 bytes, keys and values, doubled for guidance, x1.5
    per_clip = 2 * 2 * 32 * 1503 * 4 * 2 * 1.5
    for free_bytes, expected in [(80 * 2**30, AUTO_MAX), (int(10 * per_clip / 0.7) + 1, 10), (1000, 1)]:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free_bytes: (free, 80 * 2**30))
        assert auto_batch_size(model, "cuda", torch.float32, 1503) == expected


def test_tiny_models_single_thread_does_not_leak_to_the_process(engine) -> None:
    """The tiny model generates on one thread; the process keeps its own setting for other models."""
    import torch

    before = torch.get_num_threads()
    seen = []
    original = torch.set_num_threads

    def spy(count: int) -> None:
        seen.append(count)
        original(count)

    torch.set_num_threads = spy
    try:
        engine.generate(["thread check"], [1], 1.0, GenerationParams())
    finally:
        torch.set_num_threads = original
    assert seen[0] == 1
    assert torch.get_num_threads() == before
