"""Window checkpoints: a batch stopped at a window boundary resumes to the same clips, bit for bit."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from musicsweep import run_sweep
from musicsweep.config import EngineConfig, load_config
from musicsweep.engine import load_engine
from musicsweep.engine.checkpoint import StopAtWindow, WindowCheckpoint
from musicsweep.job import GenerationParams
from musicsweep.store import open_store
from musicsweep.sweep.plan import jobs_from_variants
from musicsweep.worker.context import EXIT_STOPPED
from musicsweep.worker.faults import KILL_AT_ENV
from tests.fixtures.servers import wait_until
from tests.helpers import wait_for_exit
from tests.test_drills import assert_intact, clips, exit_statuses, launch_and_wait, sweep_dir, worker_log, write_config

PROMPTS, SEEDS, DURATION_S = ["slow ambient drone", "fast techno"], [5, 6], 50.0  # 30 + 18 + 2 s


@pytest.mark.parametrize("decoder", ["fast", "hf"])
def test_resume_after_a_window_equals_the_uninterrupted_batch(decoder: str) -> None:
    engine = load_engine("tiny", EngineConfig(decoder=decoder))
    seen: list[WindowCheckpoint] = []
    whole = engine.generate(PROMPTS, SEEDS, DURATION_S, GenerationParams(), on_window=seen.append)
    assert [(c.windows_done, c.windows_total) for c in seen] == [(1, 3), (2, 3), (3, 3)]

    def stop_after_first(checkpoint: WindowCheckpoint) -> None:
        raise StopAtWindow

    with pytest.raises(StopAtWindow):
        engine.generate(PROMPTS, SEEDS, DURATION_S, GenerationParams(), on_window=stop_after_first)
    resumed_windows: list[int] = []
    resumed = engine.generate(
        PROMPTS,
        SEEDS,
        DURATION_S,
        GenerationParams(),
        resume=seen[0],
        on_window=lambda c: resumed_windows.append(c.windows_done),
    )
    assert resumed_windows == [2, 3]
    for a, b in zip(whole, resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_another_shape_is_ignored() -> None:
    engine = load_engine("tiny", EngineConfig())
    seen: list[WindowCheckpoint] = []
    whole = engine.generate(PROMPTS, SEEDS, DURATION_S, GenerationParams(), on_window=seen.append)
    single = engine.generate(PROMPTS[:1], SEEDS[:1], DURATION_S, GenerationParams(), on_window=seen.append)
    # a two-clip checkpoint offered to a one-clip batch: generated from scratch, as without it
    again = engine.generate(PROMPTS[:1], SEEDS[:1], DURATION_S, GenerationParams(), resume=seen[0])
    np.testing.assert_array_equal(single[0], again[0])
    assert len(whole) == 2


def window_lines(log_text: str) -> list[str]:
    """The `window i/n` of each window the workers generated, from their log lines."""
    return [line.split("] window ", 1)[1].split(" ", 1)[0] for line in log_text.splitlines() if "] window " in line]


def test_drill_sigkill_after_two_windows_resumes_the_clip(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 after window 2 of a 60 s clip (30 + 18 + 12 s); the rerun generates only window 3."""
    write_config(project, "./runs", batch_size=1)
    vg, name = clips(1, 60.0), "kill-window"
    jobs = jobs_from_variants(vg.variants(), name)
    store = open_store(load_config().store)

    monkeypatch.setenv(KILL_AT_ENV, "window2")
    launch_and_wait(vg, name)
    first = worker_log(name)
    assert exit_statuses(first) == [128 + signal.SIGKILL]
    assert store.exists(f"{name}/partial/{jobs[0].job_id}.codes")

    monkeypatch.delenv(KILL_AT_ENV)
    launch_and_wait(vg, name)
    log_text = worker_log(name)
    assert "resuming 1 clip(s) after window 2/3" in log_text
    assert window_lines(log_text) == ["1/3", "2/3", "3/3"]  # one clip's windows, none generated twice
    assert_intact(store, jobs, log_text)
    assert not store.list(f"{name}/partial/")


def test_drill_sigterm_mid_window_stops_at_the_boundary(project: Path) -> None:
    """SIGTERM during window 2 of 3: the worker finishes it, checkpoints, exits 75; the rerun adds one window."""
    write_config(project, "./runs", batch_size=1)
    vg, name = clips(1, 60.0), "term-window"
    jobs = jobs_from_variants(vg.variants(), name)
    store = open_store(load_config().store)

    run_sweep(vg, name=name)
    pid = int(sweep_dir(name).worker(0).pid.read_text())
    wait_until(lambda: "] window 1/3" in worker_log(name), 120, "the first window")
    os.kill(pid, signal.SIGTERM)
    wait_for_exit(pid, 120)
    first = worker_log(name)
    assert exit_statuses(first) == [EXIT_STOPPED]
    assert "stopping after window" in first and "generated " not in first
    assert store.exists(f"{name}/partial/{jobs[0].job_id}.codes")

    launch_and_wait(vg, name)
    log_text = worker_log(name)
    assert "resuming 1 clip(s) after window" in log_text
    windows = window_lines(log_text)
    assert windows[-1] == "3/3" and len(windows) <= 3 + 1
    assert_intact(store, jobs, log_text)
    assert not store.list(f"{name}/partial/")
