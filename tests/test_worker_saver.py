"""Pipelined saving (issue 18): the saver thread, and the worker delivering a batch while the next generates."""

from __future__ import annotations

import functools
import json
import threading
import time
from pathlib import Path

import pytest

from musicsweep import contract
from musicsweep.engine.generate import MusicEngine
from musicsweep.engine.progress import Progress
from musicsweep.job import Job
from musicsweep.layout import JobPaths, SweepDir
from musicsweep.store.local import LocalStore
from musicsweep.store.retry import StoreUnreachable
from musicsweep.worker import partial
from musicsweep.worker.context import EXIT_STOPPED, EXIT_STORE_UNREACHABLE, StopFlag
from musicsweep.worker.loop import Worker, main
from musicsweep.worker.saver import Saver
from musicsweep.worker.spool import SpooledClip
from tests.helpers import make_jobs, make_worker, wav_bytes


def fail(error: BaseException) -> None:
    raise error


def test_tasks_run_in_the_order_handed_in_on_one_background_thread() -> None:
    ran: list[tuple[int, str]] = []
    with Saver(max_waiting=2) as saver:
        for index in range(5):
            saver.submit(lambda index=index: ran.append((index, threading.current_thread().name)))
    assert ran == [(index, "saver") for index in range(5)]
    assert saver.thread is None, "leaving the block ends the thread"


def test_the_queue_is_bounded_so_a_slow_store_holds_generation_back() -> None:
    started, release = threading.Event(), threading.Event()
    saver = Saver(max_waiting=1)
    saver.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(10)  # the first batch is being delivered
    saver.submit(lambda: None)  # the second waits behind it
    third = threading.Thread(target=saver.submit, args=(lambda: None,))
    third.start()
    third.join(0.5)
    assert third.is_alive(), "a third hand-off must block while one batch is delivered and one waits"
    release.set()
    third.join(10)
    assert not third.is_alive()
    saver.close()


def test_a_fatal_error_skips_later_tasks_and_is_raised_on_the_main_thread() -> None:
    ran: list[int] = []
    saver = Saver(max_waiting=2)
    saver.submit(functools.partial(fail, StoreUnreachable("store gone")))
    saver.submit(lambda: ran.append(1))
    with pytest.raises(StoreUnreachable, match="store gone"):
        saver.drain()
    with pytest.raises(StoreUnreachable):
        saver.submit(lambda: ran.append(2))
    saver.close()
    assert ran == [], "nothing is delivered after a fatal error: those clips stay in the spool"
    with pytest.raises(KeyError, match="the block's own"), Saver() as saver:  # the block's error is reported
        saver.submit(functools.partial(fail, StoreUnreachable("store gone")))
        saver.wait()
        raise KeyError("the block's own")


class RecordingStore(LocalStore):
    """A local store that records (thread, key) of every write, optionally failing one upload."""

    def __init__(self, root: Path, fail_upload: int | None = None) -> None:
        super().__init__(root)
        self.writes: list[tuple[str, str]] = []
        self.uploads = 0
        self.fail_upload = fail_upload

    def put_file(self, key: str, path: Path) -> None:
        self.uploads += 1
        if self.uploads == self.fail_upload:
            raise OSError("connection reset during upload")
        self.writes.append((threading.current_thread().name, key))
        super().put_file(key, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.writes.append((threading.current_thread().name, key))
        super().put_bytes(key, data)


def spooled_batch(worker: Worker, jobs: list[Job]) -> list[SpooledClip]:
    """What run_batch hands the saver: the batch's clips claimed and in the spool."""
    for job in jobs:
        assert worker.claims.acquire(job.job_id) is None
    spool = worker.delivery.spool
    return [spool.put(job, wav_bytes(frames=int(job.duration_s * 32000)), 0.5, len(jobs)) for job in jobs]


def recording_worker(tmp_path: Path, jobs: list[Job], fail_upload: int | None = None) -> tuple[Worker, RecordingStore]:
    worker = make_worker(tmp_path)
    store = RecordingStore(tmp_path / "store", fail_upload)
    worker.context.store = worker.claims.store = store
    worker.tally.progress = Progress(len(jobs), sum(job.duration_s for job in jobs))
    return worker, store


def test_each_clip_goes_wav_then_cost_row_then_done_batch_after_batch(tmp_path: Path) -> None:
    jobs = make_jobs(4, 1.0)
    worker, store = recording_worker(tmp_path, jobs)
    with worker.saver:
        for part in (jobs[:2], jobs[2:]):
            worker.saver.submit(functools.partial(worker.delivery.deliver_batch, part, spooled_batch(worker, part)))
    ours = [(thread, key) for thread, key in store.writes if "/claims/" not in key]
    expected = []
    for job in jobs:
        paths = JobPaths.of(job, worker.context.work_dir)
        expected += [("saver", paths.audio_key), ("saver", paths.cost_key), ("saver", paths.done_key)]
    assert ours == expected
    assert worker.tally.saved == {job.job_id for job in jobs} and worker.tally.progress.done_clips == 4
    assert list(worker.delivery.spool.folder.iterdir()) == [], "a clip leaves the spool once it is done"
    assert not worker.claims.held


def test_an_upload_failing_on_the_saver_thread_fails_only_the_unsaved_clips(tmp_path: Path) -> None:
    jobs = make_jobs(3, 1.0)
    worker, store = recording_worker(tmp_path, jobs, fail_upload=2)
    with worker.saver:
        worker.saver.submit(functools.partial(worker.delivery.deliver_batch, jobs, spooled_batch(worker, jobs)))
    paths = [JobPaths.of(job, worker.context.work_dir) for job in jobs]
    assert store.exists(paths[0].done_key) and not store.exists(paths[0].failed_key("test"))
    for failed in paths[1:]:
        assert store.exists(failed.failed_key("test")) and not store.exists(failed.done_key)
        assert "connection reset during upload" in store.get_bytes(failed.failed_key("test")).decode()
    assert worker.tally.failed == [job.job_id for job in jobs[1:]] and worker.tally.saved == {jobs[0].job_id}
    assert worker.tally.progress.done_clips == 3 and worker.tally.progress.done_audio_s == 1.0
    assert sorted(p.name for p in worker.delivery.spool.folder.glob("*.wav")) == sorted(j.output_name for j in jobs[1:])
    assert not worker.claims.held, "failed clips are released for a relaunch"


def test_store_unreachable_on_the_saver_thread_exits_76_and_keeps_the_spool(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(StopFlag, "install", lambda self: None)  # leave pytest's signal handlers alone
    sweep = SweepDir(tmp_path / "runs", "s")
    jobs = make_jobs(4, 1.0)
    specs = [str(sweep.write_spec(job)) for job in jobs]
    environment = {contract.JOB_DIR: str(sweep.root), contract.LAUNCH_ID: "test", "MUSICSWEEP_STORE": str(tmp_path)}
    for name, value in (environment | {contract.ENGINE: json.dumps({"batch_size": 2})}).items():
        monkeypatch.setenv(name, value)
    real_put_file = LocalStore.put_file

    def unreachable_for_audio(self: LocalStore, key: str, path: Path) -> None:
        if "/audio/" in key:
            raise StoreUnreachable(f"store {self.url} unreachable (test)")
        real_put_file(self, key, path)

    monkeypatch.setattr(LocalStore, "put_file", unreachable_for_audio)
    assert main(specs) == EXIT_STORE_UNREACHABLE
    log = capsys.readouterr().out
    assert "giving up: store " in log and log.count("generated ") == 4
    assert sorted(p.name for p in (sweep.root / "spool").glob("*.wav")) == sorted(job.output_name for job in jobs)
    assert not (tmp_path / "s" / "audio").exists()
    markers = sorted(p.name for p in (tmp_path / "s" / "markers").iterdir())
    assert not [name for name in markers if name.endswith((".done", ".failed"))], markers
    lifetime = json.loads((tmp_path / "s" / "workers" / "worker_0.test.json").read_text())
    assert lifetime["finished"] and lifetime["clips"] == 0


def test_a_stop_waits_for_the_batch_being_delivered(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    worker = make_worker(tmp_path, batch_size=2)
    jobs = make_jobs(4, 1.0)
    deliver, submit = worker.delivery.deliver_batch, worker.saver.submit

    def slow_deliver(part: list[Job], spooled: list[SpooledClip]) -> None:
        time.sleep(1.0)  # still uploading when the main thread sees the stop
        deliver(part, spooled)

    def submit_then_stop(task) -> None:
        submit(task)
        worker.stop.event.set()  # SIGTERM right after the first batch was handed off

    monkeypatch.setattr(worker.delivery, "deliver_batch", slow_deliver)
    monkeypatch.setattr(worker.saver, "submit", submit_then_stop)
    assert worker.run(jobs) == EXIT_STOPPED
    store = worker.context.store
    done = [store.exists(JobPaths.of(job, worker.context.work_dir).done_key) for job in jobs]
    assert done == [True, True, False, False], "the handed-off batch is delivered before the worker returns"
    assert worker.tally.saved == {job.job_id for job in jobs[:2]} and list(worker.delivery.spool.folder.iterdir()) == []


def test_a_stop_between_resume_parts_releases_no_claim_before_its_clip_is_delivered(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    jobs = make_jobs(4, 1.0)
    worker, store = recording_worker(tmp_path, jobs)
    monkeypatch.setattr(partial, "resume_groups", lambda _store, batch: [batch[:2], batch[2:]])
    deliver, submit = worker.delivery.deliver_batch, worker.saver.submit

    def slow_deliver(part: list[Job], spooled: list[SpooledClip]) -> None:
        time.sleep(0.5)
        deliver(part, spooled)

    def submit_then_stop(task) -> None:
        submit(task)
        worker.stop.event.set()  # SIGTERM after the first part was handed off: run_claimed stops before the second

    monkeypatch.setattr(worker.delivery, "deliver_batch", slow_deliver)
    monkeypatch.setattr(worker.saver, "submit", submit_then_stop)
    for job in jobs:
        assert worker.claims.acquire(job.job_id) is None
    with worker.saver:
        worker.run_claimed(jobs)
        saved = {job.job_id for job in jobs[:2]}
        assert worker.tally.saved == saved, "run_claimed returns once the first part is delivered"
    keys = [key for _, key in store.writes]
    for job in jobs[:2]:
        done = keys.index(JobPaths.of(job, worker.context.work_dir).done_key)
        last_claim_write = max(i for i, key in enumerate(keys) if f"/claims/{job.job_id}/" in key)
        assert last_claim_write > done, "the claim is released after `.done`, never while the clip is uploading"
    assert not any(JobPaths.of(job, worker.context.work_dir).audio_key in keys for job in jobs[2:])
    assert not worker.claims.held, "the second part's claims are released for the next launch"


def test_a_sweep_through_the_worker_generates_while_the_last_batch_uploads(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    worker = make_worker(tmp_path, batch_size=2)
    jobs = make_jobs(6, 1.0)
    events: list[tuple[str, str]] = []
    store = worker.context.store
    real_put_file, real_put_bytes, real_generate = store.put_file, store.put_bytes, MusicEngine.generate
    # The first upload waits (up to 60 s) for the second batch to start generating: pipelined, it
    # starts at once; saved on the main thread, it cannot, and the order below tells. A fixed sleep
    # alone raced the main thread on a loaded machine.
    second_batch = threading.Event()

    def slow_upload(key: str, path: Path) -> None:
        second_batch.wait(60)
        time.sleep(0.3)  # a remote store
        real_put_file(key, path)
        events.append(("upload", key))

    def put_bytes(key: str, data: bytes) -> None:
        real_put_bytes(key, data)
        if key.endswith(".done"):
            events.append(("done", key))

    def generate(self: MusicEngine, *args, **kwargs):
        events.append(("generate", ""))
        if [kind for kind, _ in events].count("generate") == 2:
            second_batch.set()
        return real_generate(self, *args, **kwargs)

    monkeypatch.setattr(store, "put_file", slow_upload)
    monkeypatch.setattr(store, "put_bytes", put_bytes)
    monkeypatch.setattr(MusicEngine, "generate", generate)
    assert worker.run(jobs) == 0
    kinds = [kind for kind, _ in events]
    assert kinds.count("generate") == 3 and kinds.count("upload") == 6 and kinds.count("done") == 6
    audio = sorted(key for kind, key in events if kind == "upload")
    assert audio == sorted(JobPaths.of(job, worker.context.work_dir).audio_key for job in jobs)
    assert sorted(p.name for p in (tmp_path / "store" / "s" / "audio").iterdir()) == sorted(j.output_name for j in jobs)
    assert len(list((tmp_path / "store" / "s" / "costs").iterdir())) == 6
    assert kinds.index("generate", 1) < kinds.index("done"), "the second batch generates while the first uploads"
    assert worker.tally.saved == {job.job_id for job in jobs} and not worker.tally.failed and worker.tally.skipped == 0
    assert list(worker.delivery.spool.folder.iterdir()) == [] and not worker.claims.held
    assert "progress: 6/6 clips" in capsys.readouterr().out
    assert worker.lifetime.times.upload_s >= 6 * 0.3
