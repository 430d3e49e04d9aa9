"""Whole sweeps with `store: s3://...` against real S3 servers over HTTP: the quickstart flow, a
worker killed between its WAV upload and `.done`, two workers racing for one job list, bad stores."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from musicsweep.cli.run import run_sweep
from musicsweep.config import StoreConfig, load_config
from musicsweep.contract import TEST_KILL_AFTER_UPLOAD, store_config_to_env
from musicsweep.layout import SweepDir
from musicsweep.states import JobState
from musicsweep.sweep.plan import jobs_from_variants
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.servers import free_port
from tests.helpers import (
    latest_log,
    open_bucket_store,
    wait_for_exit,
    wait_for_sweep,
    wav_info,
    worker_log,
    write_s3_config,
)

PROMPTS = ["warm lofi piano", "fast techno drums", "slow ambient strings"]
VARIANTS = [{"prompt": prompt, "duration_s": 2, "model": "tiny", "seed": 3} for prompt in PROMPTS]
SWEEP_SCRIPT = """\
import sys
from musicsweep import MusicsweepError, run_sweep
try:
    run_sweep({variants!r}, name="bad-store")
except MusicsweepError as error:
    sys.exit(f"error: {{error}}")
"""


def run_and_wait(name: str) -> dict[str, str]:
    run_sweep(VARIANTS, name=name)
    states = wait_for_sweep(name, timeout_s=300)
    sweep = SweepDir(load_config().sweeps_dir, name)
    wait_for_exit(int(sweep.worker(0).pid.read_text()))
    return states


def generations(log_text: str, output_name: str) -> int:
    """How often the clip was generated (what is paid for), from the worker's `generated NAME` lines.

    Uploads would undercount: a worker whose claim was taken over generates the clip and then
    drops it without uploading, so one upload can hide two generations."""
    return log_text.count(f"generated {output_name}\n")


def check_wav(data: bytes, duration_s: float) -> None:
    with wave.open(io.BytesIO(data)) as handle:
        assert handle.getframerate() == 32000 and handle.getnchannels() == 1
        assert abs(handle.getnframes() - duration_s * 32000) <= 640 * 2


def test_quickstart_sweep_on_s3(project: Path, s3_bucket: S3Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    write_s3_config(project, s3_bucket.url, s3_bucket.server.endpoint_url)
    assert set(run_and_wait("s3-sweep").values()) == {JobState.DONE}

    pulled = subprocess.run(
        [sys.executable, "-m", "musicsweep.auto_pull", "s3-sweep", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert "paid: $" in pulled.stdout and "marginal: $" in pulled.stdout

    sweep = SweepDir(project / "runs", "s3-sweep")
    jobs = jobs_from_variants(VARIANTS, "s3-sweep")
    for job in jobs:
        assert wav_info(sweep.audio / job.output_name)[0] == 32000
    report = (sweep.root / "cost_report.csv").read_text().splitlines()
    assert report[0].startswith("s3_filename,prompt,requested_duration_s,generation_time_s,estimated_cost_usd,")
    assert len(report) == 4
    summary = json.loads(sweep.cost_summary.read_text())
    assert summary["workers"] == 1 and summary["clips"] == 3
    assert summary["paid_usd"] > summary["marginal_usd"] > 0 and summary["model_load_s"] > 0

    keys = set(open_bucket_store(s3_bucket).list("s3-sweep/"))
    launch = json.loads(sweep.manifest.read_text())["launches"][0]["id"]
    for job in jobs:
        assert {f"s3-sweep/audio/{job.output_name}", f"s3-sweep/costs/{job.job_id}.json"} <= keys
        assert {f"s3-sweep/markers/{job.job_id}.done", f"s3-sweep/claims/{job.job_id}/000000.json"} <= keys
    assert {f"s3-sweep/logs/worker_0.{launch}.log", f"s3-sweep/workers/worker_0.{launch}.json"} <= keys
    assert f"s3-sweep/markers/worker_0.{launch}.heartbeat" in keys

    again = run_sweep(VARIANTS, name="s3-sweep")  # plan-time idempotency: one listing, nothing to run
    assert len(again.skipped) == 3 and again.to_run == []

    secrets = [s3_bucket.server.access_key.encode(), s3_bucket.server.secret_key.encode()]
    files = [path for path in project.rglob("*") if path.is_file()]
    leaks = [str(path) for path in files if any(s in path.read_bytes() for s in secrets)]
    store = open_bucket_store(s3_bucket)
    leaks += [key for key in store.list("") if any(s in store.get_bytes(key) for s in secrets)]
    printed = pulled.stdout + pulled.stderr + "".join(capsys.readouterr())
    leaks += ["printed output" for s in secrets if s.decode() in printed]
    assert leaks == []


def test_killed_after_upload_then_rerun_generates_nothing_twice(
    project: Path, moto_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_s3_config(project, moto_bucket.url, moto_bucket.server.endpoint_url, batch_size=1)
    jobs = jobs_from_variants(VARIANTS, "killed")
    sweep = SweepDir(project / "runs", "killed")
    store = open_bucket_store(moto_bucket)

    monkeypatch.setenv(TEST_KILL_AFTER_UPLOAD, "1")
    assert set(run_and_wait("killed").values()) == {JobState.FAILED}
    keys = set(store.list("killed/"))
    first = next(job for job in jobs if f"killed/audio/{job.output_name}" in keys)
    assert sum(key.startswith("killed/audio/") for key in keys) == 1
    assert not any(key.startswith("killed/markers/") and key.endswith(".done") for key in keys)

    monkeypatch.delenv(TEST_KILL_AFTER_UPLOAD)
    assert set(run_and_wait("killed").values()) == {JobState.DONE}
    assert f"skip {first.output_name}: already in the store" in latest_log(sweep).read_text()  # the second launch's
    log_text = worker_log("killed")  # both launches' logs
    assert [generations(log_text, job.output_name) for job in jobs] == [1, 1, 1]
    keys = set(store.list("killed/"))
    assert {f"killed/markers/{job.job_id}.done" for job in jobs} <= keys
    for job in jobs:
        check_wav(store.get_bytes(f"killed/audio/{job.output_name}"), 2)
    recovered = store.get_json(f"killed/costs/{first.job_id}.json")
    assert recovered["generation_time_s"] > 0  # the spool kept the real generation time of the killed clip
    lifetimes = [store.get_json(key) for key in keys if key.startswith("killed/workers/")]
    assert sorted(record["finished"] for record in lifetimes) == [False, True]  # the killed one still counts


def test_two_launches_racing_on_one_job_list(project: Path, s3_bucket: S3Bucket) -> None:
    """Two workers of two launches on the same clips at once: the job-level claim lets each clip be
    generated once (with claims keyed by launch this made 2 uploads per clip)."""
    sweep = SweepDir(project / "runs", "race")
    jobs = jobs_from_variants(VARIANTS, "race")
    specs = [str(sweep.write_spec(job)) for job in jobs]
    config = StoreConfig(s3_bucket.url, endpoint_url=s3_bucket.server.endpoint_url, region="us-east-1")
    env = dict(os.environ) | store_config_to_env(config)
    env |= {"MUSICSWEEP_JOB_DIR": str(sweep.root), "MUSICSWEEP_NUM_WORKERS": "1"}
    env |= {"MUSICSWEEP_ENGINE": json.dumps({"batch_size": 1}), "MUSICSWEEP_HOURLY_COST_USD": "0.5"}
    logs = [sweep.root / f"race_{index}.log" for index in range(2)]
    workers = []
    for index, log in enumerate(logs):
        with open(log, "wb") as handle:
            command = [sys.executable, "-m", "musicsweep.worker", *specs]
            worker_env = env | {"MUSICSWEEP_WORKER_ID": "0", "MUSICSWEEP_LAUNCH_ID": f"L{index + 1}"}
            workers.append(subprocess.Popen(command, env=worker_env, stdout=handle, stderr=subprocess.STDOUT))
    try:
        assert [worker.wait(timeout=300) for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    texts = [log.read_text() for log in logs]
    for job in jobs:
        assert sum(generations(text, job.output_name) for text in texts) == 1, texts
    store = open_bucket_store(s3_bucket)
    keys = set(store.list("race/"))
    for job in jobs:
        check_wav(store.get_bytes(f"race/audio/{job.output_name}"), 2)
        assert {f"race/markers/{job.job_id}.done", f"race/claims/{job.job_id}/000000.json"} <= keys
    assert store.put_new("race/claims/probe", b"x")
    assert store.conditional_writes is (s3_bucket.server.kind == "moto")  # which claim mode this race proved


@pytest.mark.parametrize("problem", ["missing bucket", "wrong credentials", "unreachable endpoint"])
def test_bad_store_fails_before_anything_starts(
    project: Path, s3rver_server: str, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    endpoint, bucket, expected = s3rver_server, "no-such-bucket", "bucket 'no-such-bucket' does not exist"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "S3RVER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "S3RVER")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if problem == "wrong credentials":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "NOT-A-KEY")
        expected = "access denied to bucket 'no-such-bucket' (check credentials and permissions)"
    if problem == "unreachable endpoint":
        endpoint, expected = f"http://127.0.0.1:{free_port()}", "cannot connect to the endpoint"
    write_s3_config(project, f"s3://{bucket}/prefix", endpoint)
    (project / "sweep.py").write_text(SWEEP_SCRIPT.format(variants=VARIANTS))

    result = subprocess.run([sys.executable, "sweep.py"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert not (project / "runs").exists()
