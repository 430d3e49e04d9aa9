"""Fault drills against the real parts (worker processes, s3rver/moto over HTTP, a real tmpfs).

Each drill breaks a sweep on purpose, lets musicsweep recover, and then asserts the same four
things: every clip is in the store exactly once, every WAV is whole (32 kHz mono, the exact
length), there is one cost row per clip, and no clip was generated twice (counted from the
workers' `generated NAME` log lines, which a clip gets once it is on disk; a batch killed in
flight never got there, so generating it again is the only way to have it).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from musicsweep import run_sweep
from musicsweep.backends.local import LocalBackend
from musicsweep.config import StoreConfig, load_config
from musicsweep.contract import TEST_HANG_AT, store_config_to_env
from musicsweep.costs.rows import read_cost_report
from musicsweep.digests import MISMATCH
from musicsweep.job import Job
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.sweep.plan import jobs_from_variants
from musicsweep.worker.loop import EXIT_STOPPED, EXIT_STORE_UNREACHABLE
from tests.fixtures.s3 import RestartableS3rver, S3Bucket
from tests.fixtures.servers import wait_until
from tests.helpers import (
    MakesFolder,
    assert_intact,
    clips,
    exit_statuses,
    kill_then_rerun,
    latest_log,
    launch_and_wait,
    s3_extra,
    set_recovery,
    sweep_dir,
    wait_for_exit,
    wait_for_sweep,
    wav_bytes,
    worker_log,
    write_local_config,
)

pytestmark = pytest.mark.e2e  # every drill runs real worker processes

OUTAGE_S = 15


def spooled(name: str) -> list[str]:
    folder = sweep_dir(name).root / "spool"
    return sorted(p.name for p in folder.glob("*.wav")) if folder.exists() else []


@pytest.mark.parametrize("phase", ["load", "generate", "upload"])
def test_drill_sigkill_at_each_phase(project: Path, monkeypatch: pytest.MonkeyPatch, phase: str) -> None:
    write_local_config(project, "./runs", batch_size=2)
    vg, name = clips(4, 1), f"kill-{phase}"

    def nothing_done(store: Store, jobs: list[Job], first: str) -> None:
        uploaded = sorted(k for k in store.list(f"{name}/audio/"))
        assert len(uploaded) == (1 if phase == "upload" else 0)
        assert first.count("generated ") == (2 if phase == "upload" else 0)  # a batch of 2 reached the spool
        assert not any(k.endswith(".done") for k in store.list(f"{name}/markers/"))

    jobs, store, first, text = kill_then_rerun(vg, name, phase, monkeypatch, nothing_done)
    assert exit_statuses(text) == [128 + signal.SIGKILL, 0]
    assert_intact(store, jobs, text)
    again = text[len(first) :]
    assert again.count("skip ") == (1 if phase == "upload" else 0)
    assert again.count("from the spool") == (1 if phase == "upload" else 0)
    assert spooled(name) == []


def test_drill_stop_during_the_model_load_claims_and_generates_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop (a spot notice, SIGTERM) while the model loads: the worker claims and generates no clip
    and exits 75 once loaded; the next launch makes each clip exactly once."""
    write_local_config(project, "./runs", batch_size=2)
    vg, name = clips(2, 1), "stop-load"
    jobs = jobs_from_variants(vg.variants(), name)
    store = open_store(load_config().store)
    monkeypatch.setenv(TEST_HANG_AT, "load")  # the load waits for the stop, so the stop comes during it
    run_sweep(vg, name=name)
    monkeypatch.delenv(TEST_HANG_AT)
    pid = int(sweep_dir(name).worker(0).pid.read_text())
    wait_until(lambda: "] test hook: holding at load" in worker_log(name), 120, "the model load")
    os.kill(pid, signal.SIGTERM)
    wait_for_exit(pid, 300)  # the load goes on after the stop: minutes on a busy machine
    first = worker_log(name)
    assert exit_statuses(first) == [EXIT_STOPPED]
    assert first.count("] generated ") == 0 and not store.list(f"{name}/claims/")
    launch_and_wait(vg, name)
    text = worker_log(name)
    assert exit_statuses(text) == [EXIT_STOPPED, 0]
    assert_intact(store, jobs, text)


def test_drill_s3_server_down_15_s_mid_sweep(project: Path, restartable_s3rver: RestartableS3rver) -> None:
    server = restartable_s3rver
    write_local_config(project, "s3://drill/musicsweep", batch_size=1, store_extra=s3_extra(server.endpoint_url))
    # s3rver, unlike S3, can leave an empty object when it stops mid-write: a claim written then
    # cannot be parsed and is taken over after a lease, here 30 s (longer than the outage).
    set_recovery(project, lease_s=30)
    vg, name = clips(4, 2), "outage"
    jobs = jobs_from_variants(vg.variants(), name)
    run_sweep(vg, name=name)
    pull_log = project / "pull.log"
    with open(pull_log, "wb") as handle:
        puller = subprocess.Popen(
            [sys.executable, "-m", "musicsweep.auto_pull", name, "--interval", "1", "--orphan-grace", "600"],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        log = latest_log(sweep_dir(name))
        wait_until(lambda: log.read_text().count("uploaded ") >= 2, 180, "two uploads")
        server.stop()
        time.sleep(OUTAGE_S)
        server.start()
        wait_for_exit(int(sweep_dir(name).worker(0).pid.read_text()), 240)
        assert puller.wait(timeout=120) == 0, pull_log.read_text()
    finally:
        puller.kill()
        puller.wait()
    text = worker_log(name)
    assert exit_statuses(text) == [0]
    assert "store unreachable, retrying (" in text and "store reachable again after" in text
    pulled = pull_log.read_text()
    assert "store unreachable (" in pulled and "still polling" in pulled and "Traceback" not in pulled
    store = open_store(load_config().store)
    assert_intact(store, jobs, text)
    local = sweep_dir(name)
    assert sorted(p.name for p in local.audio.glob("*.wav")) == sorted(job.output_name for job in jobs)
    assert len(read_cost_report(local.cost_report)) == len(jobs)


def test_drill_outage_past_the_budget_then_restart_uploads_the_spool(
    project: Path, restartable_s3rver: RestartableS3rver
) -> None:
    server = restartable_s3rver
    extra = s3_extra(server.endpoint_url, budget_s=3)
    write_local_config(project, "s3://drill/musicsweep", batch_size=3, store_extra=extra)
    vg = clips(1, 1)
    vg.update("prompt", ["warm lofi piano", "fast techno drums", "slow ambient strings", "solo cello"])
    vg.update("duration_s", lambda prompt: [1 if prompt == "warm lofi piano" else 6])  # then a batch of 3
    name = "budget"
    jobs = jobs_from_variants(vg.variants(), name)
    run_sweep(vg, name=name)
    log = latest_log(sweep_dir(name))
    store = open_store(load_config().store)
    first_done = f"{name}/markers/{next(job for job in jobs if job.duration_s == 1).job_id}.done"
    second_batch = lambda: "generating 3 clip(s) of 6s" in log.read_text() and store.exists(first_done)  # noqa: E731
    wait_until(second_batch, 180, "the second batch, the first delivered (by the saver thread, meanwhile)")
    server.stop()  # while 18 s of audio are being generated: they can only go to the spool
    wait_for_exit(int(sweep_dir(name).worker(0).pid.read_text()), 120)
    first = worker_log(name)
    assert exit_statuses(first) == [EXIT_STORE_UNREACHABLE]
    assert "giving up: store s3://drill/musicsweep unreachable for " in first
    kept = spooled(name)
    assert len(kept) == 3 and first.count("generated ") == 4

    server.start()
    assert not [k for k in store.list(f"{name}/markers/") if k.endswith(".failed")]  # nothing marked
    launch_and_wait(vg, name)
    text = worker_log(name)
    assert exit_statuses(text) == [EXIT_STORE_UNREACHABLE, 0]
    assert_intact(store, jobs, text)
    again = text[len(first) :]
    assert again.count("from the spool") == 3 and again.count("generated ") == 0
    assert spooled(name) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 168 KB tmpfs (room for one 2 s clip and the small files beside it: markers, claims, the
    launch's shard list), remountable bigger; needs root, as CI has."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    folder = tmp_path / "full-store"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=168k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_drill_full_local_store_then_freed(project: Path, small_tmpfs: Path) -> None:
    write_local_config(project, str(small_tmpfs), batch_size=3)
    vg, name = clips(3, 2), "full"
    jobs = jobs_from_variants(vg.variants(), name)
    launch_and_wait(vg, name)
    first = worker_log(name)
    assert exit_statuses(first) == [1]
    assert "No space left on device" in first
    store = open_store(load_config().store)
    wavs = [k for k in store.list(f"{name}/audio/")]
    assert len(wavs) == 1 and not [p for p in (small_tmpfs / name / "audio").iterdir() if p.name.startswith(".")]
    assert len(spooled(name)) == 2

    subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)
    launch_and_wait(vg, name)
    text = worker_log(name)
    assert exit_statuses(text) == [1, 0]
    assert_intact(store, jobs, text)
    assert text[len(first) :].count("from the spool") == 2


def test_drill_truncated_spec_fails_one_job(project: Path) -> None:
    write_local_config(project, "./runs", batch_size=3)
    vg, name = clips(3, 1), "truncated"
    jobs = jobs_from_variants(vg.variants(), name)
    sweep = sweep_dir(name)
    specs = [sweep.write_spec(job) for job in jobs]
    specs[1].write_bytes(specs[1].read_bytes()[:40])
    env = dict(os.environ) | store_config_to_env(StoreConfig(str(project / "runs")))
    env |= {"MUSICSWEEP_JOB_DIR": str(sweep.root), "MUSICSWEEP_LAUNCH_ID": "L1"}
    env |= {"MUSICSWEEP_ENGINE": json.dumps({"batch_size": 3}), "MUSICSWEEP_HOURLY_COST_USD": "0.5"}
    log = project / "direct.log"
    with open(log, "wb") as handle:
        command = [sys.executable, "-m", "musicsweep.worker", *map(str, specs)]
        assert subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=240).returncode == 1
    store = open_store(load_config().store)
    (failed_key,) = [k for k in store.list(f"{name}/markers/{jobs[1].job_id}.") if k.endswith(".failed")]
    failed = store.get_bytes(failed_key).decode()
    assert failed.startswith(f"{specs[1]}: cannot load job spec: ") and failed.count("\n") == 0
    assert sorted(k for k in store.list(f"{name}/markers/") if k.endswith(".done")) == sorted(
        f"{name}/markers/{job.job_id}.done" for job in (jobs[0], jobs[2])
    )

    plan = run_sweep(vg, name=name)  # the relaunch writes a fresh spec for the failed job only
    assert [job.job_id for job in plan.to_run] == [jobs[1].job_id] and len(plan.skipped) == 2
    wait_for_exit(int(sweep.worker(0).pid.read_text()), 240)
    assert_intact(store, jobs, log.read_text() + worker_log(name))
    assert cloudpickle.loads(specs[1].read_bytes()) == jobs[1]


def test_drill_spec_swapped_before_submit_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec replaced in the sweep folder after the launcher wrote it and before the worker starts:
    the worker refuses it unread, fails that job with the digest line, and generates the others once."""
    write_local_config(project, "./runs", batch_size=3)
    vg, name = clips(3, 1), "swapped"
    jobs = jobs_from_variants(vg.variants(), name)
    made = project / "made-by-the-pickle"
    real_submit = LocalBackend.submit

    def swap_then_submit(self, launch, shards):
        sweep_dir(name).job(jobs[1]).spec.write_bytes(pickle.dumps(MakesFolder(made)))
        return real_submit(self, launch, shards)

    monkeypatch.setattr(LocalBackend, "submit", swap_then_submit)
    launch_and_wait(vg, name)
    assert not made.exists()
    store, text = open_store(load_config().store), worker_log(name)
    assert exit_statuses(text) == [1]
    (failed_key,) = [k for k in store.list(f"{name}/markers/{jobs[1].job_id}.") if k.endswith(".failed")]
    failed = store.get_bytes(failed_key).decode()
    assert failed.startswith(f"permanent failure: {MISMATCH} ") and failed.count("\n") == 1
    assert f"] FAILED {jobs[1].job_id}: {MISMATCH} " in text
    assert_intact(store, [jobs[0], jobs[2]], text)
    assert not store.exists(f"{name}/audio/{jobs[1].output_name}")


def test_drill_killed_pull_leaves_nothing_behind(
    project: Path, moto_bucket: S3Bucket, stall_proxy_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = moto_bucket.server.endpoint_url
    write_local_config(project, moto_bucket.url, batch_size=3, store_extra=s3_extra(endpoint))
    vg, name = clips(3, 1), "pulled"
    jobs = jobs_from_variants(vg.variants(), name)
    launch_and_wait(vg, name)
    assert set(wait_for_sweep(name).values()) == {"done"}
    local = sweep_dir(name)
    for wav in local.audio.glob("*.wav"):
        wav.unlink()

    proxy = stall_proxy_factory(int(endpoint.rsplit(":", 1)[1]))
    write_local_config(project, moto_bucket.url, batch_size=3, store_extra=s3_extra(proxy.endpoint_url))
    manifest = local.read_manifest()  # auto_pull reads the store the sweep was launched with
    manifest.store["endpoint_url"] = proxy.endpoint_url
    local.write_manifest(manifest)
    proxy.stall_wavs.set()
    puller = subprocess.Popen([sys.executable, "-m", "musicsweep.auto_pull", name, "--once"])
    try:
        wait_until(lambda: len(list(local.audio.glob(".*.pull-*.tmp"))) == len(jobs), 120, "half-pulled WAVs")
    finally:
        puller.send_signal(signal.SIGKILL)
        puller.wait()
    leftovers = list(local.audio.glob(".*.tmp"))
    assert len(leftovers) == len(jobs) and not list(local.audio.glob("*.wav"))

    proxy.stall_wavs.clear()
    result = subprocess.run(
        [sys.executable, "-m", "musicsweep.auto_pull", name, "--once"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(local.audio.glob(".*")) == []
    assert sorted(p.name for p in local.audio.iterdir()) == sorted(job.output_name for job in jobs)
    store = open_store(load_config().store)
    assert_intact(store, jobs, worker_log(name))
    for job in jobs:
        assert (local.audio / job.output_name).read_bytes() == store.get_bytes(f"{name}/audio/{job.output_name}")
    assert len(read_cost_report(local.cost_report)) == len(jobs)


def test_drill_partial_object_in_the_store_is_replaced(project: Path, restartable_s3rver: RestartableS3rver) -> None:
    """What s3rver on a full disk kept: the first 32 KB of a clip under its full key, with and without `.done`."""
    store_extra = s3_extra(restartable_s3rver.endpoint_url)
    write_local_config(project, "s3://drill/musicsweep", batch_size=3, store_extra=store_extra)
    vg, name = clips(2, 2), "partial"
    jobs = jobs_from_variants(vg.variants(), name)
    store = open_store(load_config().store)
    torn = wav_bytes(frames=64000)[:32768]
    for job in jobs:
        store.put_bytes(f"{name}/audio/{job.output_name}", torn)
    store.put_bytes(f"{name}/markers/{jobs[0].job_id}.done", b"an older musicsweep took it for done\n")
    plan = run_sweep(vg, name=name)
    assert len(plan.to_run) == 2 and plan.skipped == []
    wait_for_exit(int(sweep_dir(name).worker(0).pid.read_text()), 240)
    text = worker_log(name)
    assert text.count("the stored object is incomplete (32768 bytes, but its header declares 128044)") == 2
    assert_intact(store, jobs, text)
    result = subprocess.run(
        [sys.executable, "-m", "musicsweep.auto_pull", name, "--once"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for job in jobs:
        assert (sweep_dir(name).audio / job.output_name).stat().st_size == 128044
