"""benchmarks/gpu.sh runs end to end on CPU with the tiny model, so a lent GPU never meets a broken script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy  # the GPU benchmark smoke run builds and times models on the CPU

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_smoke_runs_on_cpu_and_writes_its_figures(tmp_path):
    out = tmp_path / "gpu-results.md"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = out.read_text()
    assert figures.strip() == done.stdout.strip()
    assert "| batch | hf ms/step | fast ms/step | fast / hf |" in figures
    assert "\n| 1 | " in figures and "\n| 2 | " in figures
    assert "audio s per wall s" in figures and "ratio" in figures
    for mode in ("text", "stereo", "audio prompt", "melody"):
        assert f"\n| {mode} | " in figures  # each of MusicGen's modes, hf against fast
