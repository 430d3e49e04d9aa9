"""Shared by benchmarks/engine.py and benchmarks/gpu.py: interleaved medians, engines per token loop, clips, modes."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from musicsweep.config import EngineConfig  # noqa: E402
from musicsweep.engine import MusicEngine  # noqa: E402
from musicsweep.engine.inputs import ClipInputs  # noqa: E402
from musicsweep.engine.loading import LoadedModel, torch_threads  # noqa: E402
from musicsweep.engine.longform import plan_windows  # noqa: E402
from musicsweep.job import GenerationParams  # noqa: E402

PROMPTS = ["lofi hip hop with warm piano", "epic orchestral trailer", "minimal techno", "ambient drone"]
PARAMS = GenerationParams()
TOKEN_LOOPS = ("fast", "hf")


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(run: Callable[[], object]) -> float:
    synchronize()
    started = time.perf_counter()
    run()
    synchronize()
    return time.perf_counter() - started


def median_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each run; the runs take turns, so a burst of load on a shared host hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run))
    return {name: statistics.median(values) for name, values in times.items()}


def clips(count: int) -> tuple[list[str], list[int]]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(count)], list(range(count))


def engines(loaded: LoadedModel, token_loops: tuple[str, ...] = TOKEN_LOOPS) -> dict[str, MusicEngine]:
    """One engine per token loop, sharing the loaded model."""
    return {name: MusicEngine(loaded, EngineConfig(token_loop=name)) for name in token_loops}


def codes_run(engine: MusicEngine, batch: int, clip_s: float) -> tuple[Callable[[], object], int]:
    """A run that generates only the codes of `batch` clips (no audio decode), and its decode-step count."""
    loaded = engine.loaded
    prompts, seeds = clips(batch)
    inputs = dict(loaded.tokenizer(text=prompts, padding=True, return_tensors="pt").to(loaded.device))
    frames = int(clip_s * loaded.frame_rate)
    windows = plan_windows(frames, loaded.frame_rate, PARAMS.extend_stride_s)
    steps = sum(w.new_frames for w in windows) + len(windows) * (loaded.num_codebooks - 1)

    def run() -> None:
        with torch_threads(loaded.threads):
            engine.generate_codes(inputs, windows, PARAMS, seeds)

    return run, steps


def describe_host() -> str:
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}, {os.cpu_count()} CPUs, load average {load:.1f}"


def mode_inputs(mode: str, batch: int, clip_s: float) -> ClipInputs | None:
    """A 1 s audio prompt or a melody as long as the clip, per clip of the batch (tones: the content is irrelevant)."""
    import numpy as np

    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(clip_s * 32000)) / 32000).astype(np.float32)[None]
    if mode == "audio prompt":
        return ClipInputs(audio_prompts=[tone[:, :32000]] * batch)
    if mode == "melody":
        return ClipInputs(melodies=[tone] * batch)
    return None


MODES = {"text": "tiny", "stereo": "tiny-stereo", "audio prompt": "tiny", "melody": "tiny-melody"}
