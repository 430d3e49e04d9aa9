"""Window checkpoints: a batch stopped at a window boundary resumes bit for bit, in the same batch or
from its clips' own codes in any other; drills kill workers mid-clip on the local store and on S3."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from musicsweep import run_sweep
from musicsweep.config import EngineConfig, load_config
from musicsweep.engine import load_engine
from musicsweep.engine.checkpoint import StopAtWindow, WindowCheckpoint
from musicsweep.job import GenerationParams, Job
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.local import LocalStore
from musicsweep.sweep.plan import jobs_from_variants
from musicsweep.worker import partial
from musicsweep.worker.context import EXIT_STOPPED
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.servers import wait_until
from tests.helpers import (
    assert_intact,
    clips,
    exit_statuses,
    kill_then_rerun,
    launch_and_wait,
    s3_extra,
    sweep_dir,
    wait_for_exit,
    window_lines,
    worker_log,
    write_local_config,
)

PROMPTS, SEEDS, DURATION_S = ["slow ambient drone", "fast techno"], [5, 6], 50.0  # 30 + 18 + 2 s


@pytest.mark.parametrize("token_loop", ["fast", "hf"])
@pytest.mark.heavy
def test_resume_after_a_window_equals_the_uninterrupted_batch(token_loop: str) -> None:
    engine = load_engine("tiny", EngineConfig(token_loop=token_loop))
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


@pytest.mark.heavy
def test_a_checkpoint_of_another_shape_is_ignored() -> None:
    engine = load_engine("tiny", EngineConfig())
    seen: list[WindowCheckpoint] = []
    whole = engine.generate(PROMPTS, SEEDS, DURATION_S, GenerationParams(), on_window=seen.append)
    single = engine.generate(PROMPTS[:1], SEEDS[:1], DURATION_S, GenerationParams(), on_window=seen.append)
    # a two-clip checkpoint offered to a one-clip batch: generated from scratch, as without it
    again = engine.generate(PROMPTS[:1], SEEDS[:1], DURATION_S, GenerationParams(), resume=seen[0])
    np.testing.assert_array_equal(single[0], again[0])
    assert len(whole) == 2


def checkpointed(store: Store, jobs: list[Job], stop_after: int, paid_s: float = 2.0) -> list[WindowCheckpoint]:
    """Generate `jobs` as one batch, checkpointing each window in the store, and stop after `stop_after`."""
    engine = load_engine("tiny", EngineConfig())
    seen: list[WindowCheckpoint] = []

    def on_window(checkpoint: WindowCheckpoint) -> None:
        seen.append(checkpoint)
        partial.save(store, jobs, checkpoint, [paid_s * checkpoint.windows_done] * len(jobs))
        if checkpoint.windows_done == stop_after:
            raise StopAtWindow

    with pytest.raises(StopAtWindow):
        engine.generate(
            [j.prompt for j in jobs], [j.seed for j in jobs], DURATION_S, GenerationParams(), None, on_window
        )
    return seen


@pytest.mark.heavy
def test_a_clip_resumes_in_another_batch_from_its_own_codes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    a, b, c = jobs_from_variants(clips(3, DURATION_S).variants(), "other-batch")
    saved = checkpointed(store, [a, b], stop_after=1)[0]
    assert partial.resume_groups(store, [a, b, c]) == [[a, b], [c]]
    assert partial.resume_groups(store, [c, b, a]) == [[b, a], [c]]
    assert partial.resume_groups(store, [b, c]) == [[b], [c]]

    other = partial.load(store, [b])
    assert other is not None and other.paid_s == [2.0] and other.checkpoint.windows_done == 1
    assert torch.equal(other.checkpoint.codes[0], saved.codes[1])
    assert partial.load(store, [b, c]) is None

    engine = load_engine("tiny", EngineConfig())
    runs = []
    for _ in range(2):
        seen: list[WindowCheckpoint] = []
        runs.append(
            engine.generate([b.prompt], [b.seed], DURATION_S, GenerationParams(), other.checkpoint, seen.append)
        )
        assert [cp.windows_done for cp in seen] == [2, 3]
        assert torch.equal(seen[0].codes[0, :, : saved.codes.shape[-1]], saved.codes[1])  # continues b's codes
    np.testing.assert_array_equal(runs[0][0], runs[1][0])  # b's own stream: tests/test_streams.py
    assert runs[0][0].shape == (round(DURATION_S * engine.sampling_rate),)


@pytest.mark.heavy
def test_a_stored_checkpoint_of_the_same_batch_resumes_bit_for_bit(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    jobs = jobs_from_variants(clips(2, DURATION_S).variants(), "same-batch")
    engine = load_engine("tiny", EngineConfig())
    prompts, seeds = [j.prompt for j in jobs], [j.seed for j in jobs]
    whole = engine.generate(prompts, seeds, DURATION_S, GenerationParams())
    seen = checkpointed(store, jobs, stop_after=2)
    # killed between the two clips' writes of window 2: the second is still at window 1
    store.put_bytes(partial.key(jobs[1]), partial.encode(jobs[1], 1, seen[0], 2.0))
    resume = partial.load(store, jobs)
    assert resume is not None and resume.checkpoint.windows_done == 1
    assert resume.paid_s == [4.0, 2.0]
    resumed = engine.generate(prompts, seeds, DURATION_S, GenerationParams(), resume.checkpoint)
    for expected, got in zip(whole, resumed, strict=True):
        np.testing.assert_array_equal(expected, got)


def clip_windows(log_text: str) -> int:
    """Windows generated per clip, summed over clips: a window of a batch of N clips counts N."""
    return sum(int(line.rsplit(" of ", 1)[1].split(" ")[0]) for line in log_text.splitlines() if "] window " in line)


def left_checkpoints(store: Store, jobs: list[Job], first: str) -> None:
    """The kill left each clip's checkpoint."""
    sweep = jobs[0].sweep
    assert sorted(store.list(f"{sweep}/partial/")) == sorted(f"{sweep}/partial/{j.job_id}.codes" for j in jobs)


@pytest.mark.e2e
def test_drill_sigkill_mid_120s_clips_resumes_them_in_other_batches(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 after window 3 of 6 of a batch of two 120 s clips; the rerun, one clip per batch,
    generates only windows 4 to 6 of each, and each cost row counts both launches' time."""
    write_local_config(project, "./runs", batch_size=2)
    vg, name = clips(2, 120.0), "kill-window"

    paid: dict[str, float] = {}  # each clip's share of the killed batch, as its checkpoint carries it

    def left_checkpoints_then_batches_of_one(store: Store, jobs: list[Job], first: str) -> None:
        left_checkpoints(store, jobs, first)
        for job in jobs:
            payload = partial.decode(store.get_bytes(partial.key(job)))
            assert payload is not None and payload["paid_s"] > 0
            paid[job.job_id] = payload["paid_s"]
        write_local_config(project, "./runs", batch_size=1)

    jobs, store, first, log_text = kill_then_rerun(
        vg, name, "window3", monkeypatch, left_checkpoints_then_batches_of_one
    )
    again = log_text[len(first) :]
    assert again.count("resuming 1 clip(s) after window 3/6") == 2
    assert window_lines(first) == ["1/6", "2/6", "3/6"] and window_lines(again) == ["4/6", "5/6", "6/6"] * 2
    assert clip_windows(log_text) == 2 * 6  # each clip's windows once: none generated twice
    assert_intact(store, jobs, log_text)
    assert not store.list(f"{name}/partial/")
    for job in jobs:  # the rerun's batch time of each clip: the batch line after its `generated` line
        batch_line = rf"generated {re.escape(job.output_name)}\n.*batch of 1 x 120s in ([\d.]+)s"
        rerun_s = float(re.search(batch_line, again)[1])
        row = store.get_json(f"{name}/costs/{job.job_id}.json")
        assert row["resumed_from_window"] == 3 and row["batch_size"] == 1
        # its share of the killed batch's three windows too (the log rounds the rerun to 0.1 s)
        assert row["generation_time_s"] == pytest.approx(paid[job.job_id] + rerun_s, abs=0.051)


def test_drill_sigkill_mid_120s_clip_on_s3_resumes_it_bit_for_bit(
    project: Path, moto_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same kill -9, after window 2 of 6, with the store on a real S3 server (moto over HTTP)."""
    write_local_config(project, moto_bucket.url, batch_size=1, store_extra=s3_extra(moto_bucket.server.endpoint_url))
    vg, name = clips(1, 120.0), "kill-window-s3"
    jobs, store, _, log_text = kill_then_rerun(vg, name, "window2", monkeypatch, left_checkpoints)
    assert "resuming 1 clip(s) after window 2/6" in log_text
    assert window_lines(log_text) == [f"{i}/6" for i in range(1, 7)]  # one clip's windows, none twice
    assert_intact(store, jobs, log_text)
    assert not store.list(f"{name}/partial/")
    assert store.get_json(f"{name}/costs/{jobs[0].job_id}.json")["resumed_from_window"] == 2


@pytest.mark.e2e
def test_drill_sigterm_mid_window_stops_at_the_boundary(project: Path) -> None:
    """SIGTERM during window 2 of 3: the worker finishes it, checkpoints, exits 75; the rerun adds one window."""
    write_local_config(project, "./runs", batch_size=1)
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
