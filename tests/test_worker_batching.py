"""The worker's generation loop, in process with a local store: batches, back-off, cache-ahead, model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import musicsweep.engine
from musicsweep.engine.batching import CPU_BATCH, INJECT_ENV
from musicsweep.layout import JobPaths
from musicsweep.worker.claims import Claims, Owner
from musicsweep.worker.loop import Worker
from tests.helpers import make_jobs, make_worker, wav_info


@pytest.fixture
def load_counter(monkeypatch):
    """Count load_engine calls per model name, keeping the real loading."""
    counts: dict[str, int] = {}
    real = musicsweep.engine.load_engine

    def counting(name, config, source=None):
        counts[name] = counts.get(name, 0) + 1
        return real(name, config, source)

    monkeypatch.setattr(musicsweep.engine, "load_engine", counting)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return counts


def store_path(worker: Worker, key: str) -> Path:
    return worker.context.store.local_path(key)


def test_injected_oom_backs_off_to_single_clips_and_completes_every_clip(tmp_path, monkeypatch, capsys, load_counter):
    monkeypatch.setenv(INJECT_ENV, "1")
    worker = make_worker(tmp_path, batch_size=4)
    jobs = make_jobs(5)
    assert worker.run(jobs) == 0
    log = capsys.readouterr().out
    assert "batch of 4 failed (InjectedFailure: CUDA out of memory" in log
    assert "retrying in batches of 2" in log and "retrying in batches of 1" in log
    # the shrunken size sticks for the rest of the group: the fifth clip is not tried as a batch of 4 again
    assert log.count("batch of 4 failed") == 1
    assert "progress: 5/5 clips" in log
    for job in jobs:
        paths = JobPaths.of(job, worker.context.work_dir)
        assert store_path(worker, paths.done_key).exists()
        assert json.loads(store_path(worker, paths.cost_key).read_text())["batch_size"] == 1
        assert wav_info(store_path(worker, paths.audio_key)) == (32000, 1, 64000)


def test_batches_share_generate_calls_and_each_model_loads_once(tmp_path, capsys, load_counter):
    worker = make_worker(tmp_path, batch_size=3)
    jobs = make_jobs(4, 2.0) + make_jobs(2, 3.0)
    assert worker.run(jobs) == 0
    log = capsys.readouterr().out
    assert load_counter == {"tiny": 1}
    assert log.count("loaded model tiny") == 1
    assert [line.split("] ")[1].split(" in ")[0] for line in log.splitlines() if "s in " in line] == [
        "batch of 3 x 2s",
        "batch of 1 x 2s",
        "batch of 2 x 3s",
    ]
    assert "progress: 6/6 clips" in log and "ETA 0:00:00" in log
    for job in jobs:
        paths = JobPaths.of(job, worker.context.work_dir)
        assert wav_info(store_path(worker, paths.audio_key))[2] == int(job.duration_s * 32000)


def test_unreachable_model_fails_its_jobs_at_once_and_the_others_run(tmp_path, monkeypatch, capsys, load_counter):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # cache-ahead exports hf_home; restore it afterwards
    worker = make_worker(tmp_path, batch_size=4, hf_home=str(tmp_path / "hf"))
    bad = make_jobs(2, model="nobody/no-such-musicgen")
    good = make_jobs(1)
    assert worker.run(good + bad) == 1
    log = capsys.readouterr().out
    assert load_counter == {"tiny": 1}, "no generation may be attempted for the unreachable model"
    for job in bad:
        text = store_path(worker, JobPaths.of(job, worker.context.work_dir).failed_key("test")).read_text()
        assert len(text.strip().splitlines()) == 1
        assert "model 'nobody/no-such-musicgen'" in text and "cannot be fetched" in text
    assert log.index("cache-ahead: model 'nobody/no-such-musicgen'") < log.index("loaded model tiny")
    assert log.index("FAILED") < log.index("loaded model tiny")
    assert store_path(worker, JobPaths.of(good[0], worker.context.work_dir).done_key).exists()
    assert sorted(worker.tally.failed) == sorted(job.job_id for job in bad)


def test_auto_batch_size_on_cpu_is_the_fixed_default(tmp_path, load_counter):
    worker = make_worker(tmp_path, batch_size="auto", device="cpu")
    assert worker.sizer.size(make_jobs(1)[0]) == CPU_BATCH


def test_progress_rate_and_eta_leave_out_skipped_clips_and_model_loading(monkeypatch):
    from types import SimpleNamespace

    from musicsweep.engine import progress as progress_module

    now = [100.0]
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    progress = progress_module.Progress(total_clips=4, total_audio_s=40.0)
    assert progress.advance(1, 10.0, generated=False) == "progress: 1/4 clips, 0.00 audio s/s, ETA unknown"
    now[0] = 200.0  # a model load: not part of the rate
    progress.begin()
    now[0] = 205.0
    assert progress.advance(1, 10.0) == "progress: 2/4 clips, 2.00 audio s/s, ETA 0:00:10"
    progress.begin()  # later calls keep the first start
    now[0] = 215.0
    assert progress.advance(2, 20.0) == "progress: 4/4 clips, 2.00 audio s/s, ETA 0:00:00"


def test_an_upload_failing_midway_fails_only_the_unsaved_clips(tmp_path, monkeypatch, load_counter):
    worker = make_worker(tmp_path, batch_size=3)
    jobs = make_jobs(3)
    store = worker.context.store
    real_put = store.put_file
    uploads = []

    def flaky_put(key: str, path: Path) -> None:
        uploads.append(key)
        if len(uploads) == 2:
            raise OSError("connection reset during upload")
        real_put(key, path)

    monkeypatch.setattr(store, "put_file", flaky_put)
    assert worker.run(jobs) == 1
    markers = [JobPaths.of(job, worker.context.work_dir) for job in jobs]
    assert store_path(worker, markers[0].done_key).exists()
    assert not store_path(worker, markers[0].failed_key("test")).exists(), "a saved clip must not be marked failed"
    for paths in markers[1:]:
        assert store_path(worker, paths.failed_key("test")).exists()
        assert not store_path(worker, paths.done_key).exists()
    assert worker.tally.failed == [job.job_id for job in jobs[1:]]


def test_a_model_that_fails_to_load_fails_only_the_clips_this_worker_claims(tmp_path, monkeypatch, capsys) -> None:
    """A load that fails on this host is a permanent failure of the clips it claims, never of one
    another worker holds (with dynamic assignment the group may hold other shards' clips)."""

    def failing(name, config, source=None):
        raise RuntimeError("CUDA error: out of memory while loading")

    monkeypatch.setattr(musicsweep.engine, "load_engine", failing)
    worker = make_worker(tmp_path, batch_size=2)
    jobs = make_jobs(3)
    other = Claims(worker.context.store, "s", Owner("elsewhere", 7, "L9", 3))
    assert other.acquire(jobs[0].job_id) is None  # generating it on another host right now
    deferred = worker.generate(jobs)
    assert [job.job_id for job in deferred] == [jobs[0].job_id]
    work = worker.context.work_dir
    failed = [job for job in jobs if store_path(worker, JobPaths.of(job, work).failed_key("test")).exists()]
    assert failed == jobs[1:]
    text = store_path(worker, JobPaths.of(jobs[1], work).failed_key("test")).read_text()
    assert text.startswith("permanent failure:") and "out of memory while loading" in text
