"""The launched user data, executed for real in a sandbox: S3 and EC2 are moto over HTTP, IMDS is the
stand-in, `shutdown` is a stub. One run finishes its shard; one is interrupted by a spot notice mid-run,
and `--relaunch-failed` starts a new instance for exactly the clips it left."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

from musicsweep import run_sweep
from musicsweep.cli.pull import main as auto_pull
from musicsweep.config import load_config
from musicsweep.digests import MISMATCH
from musicsweep.layout import StoreKeys, SweepDir, worker_log_name
from musicsweep.states import JobState
from musicsweep.sweep.observe import observe
from musicsweep.sweep.relaunch import judge, relaunch_jobs
from tests.fixtures.ec2 import EC2Project, InstanceSandbox
from tests.helpers import MakesFolder, assert_each_clip_once, ec2_variants, generated_hashes


def live_instance(ec2_project: EC2Project, name: str) -> str:
    live = ec2_project.backend().instances(name, ("pending", "running"))
    assert len(live) == 1
    return live[0]["InstanceId"]


def test_user_data_runs_the_shard_uploads_and_shuts_down(
    ec2_project: EC2Project, instance_sandbox: InstanceSandbox
) -> None:
    name = ec2_project.sweep_name()
    plan = run_sweep(ec2_variants(2, 2), name, yes=True)
    backend = ec2_project.backend()
    instance_id = live_instance(ec2_project, name)
    assert instance_sandbox.run(backend, instance_id) == 0
    assert instance_sandbox.shutdown_log.read_text().splitlines() == ["-h +30", "-h now"]
    assert ec2_project.imds.token_requests >= 1 and ec2_project.imds.unauthorized == 0
    job_ids = {job.job_id for job in plan.jobs}
    assert_each_clip_once(ec2_project, name, job_ids, generated_hashes(ec2_project, name))
    keys = ec2_project.s3_keys(f"{name}/")
    heartbeats = [key for key in keys if key.startswith(f"{name}/markers/worker_0.") and key.endswith(".heartbeat")]
    launch = SweepDir(load_config().sweeps_dir, name).read_manifest().launch_ids()[-1]
    assert StoreKeys(name).log(0, launch) in keys and len(heartbeats) == 1

    assert auto_pull([name, "--once"]) == 0
    sweep = SweepDir(load_config().sweeps_dir, name)
    assert len(list(sweep.audio.glob("*.wav"))) == 2
    summary = json.loads(sweep.cost_summary.read_text())
    assert summary["clips"] == 2 and summary["paid_usd"] > 0
    assert {i["State"]["Name"] for i in backend.instances(name)} == {"terminated"}


def test_spot_notice_mid_run_stops_and_relaunch_finishes_the_rest(
    ec2_project: EC2Project, instance_sandbox: InstanceSandbox
) -> None:
    name = ec2_project.sweep_name()
    plan = run_sweep(ec2_variants(6, 4), name, yes=True)
    job_ids = {job.job_id for job in plan.jobs}
    backend = ec2_project.backend()
    first = live_instance(ec2_project, name)
    process = instance_sandbox.start(backend, first)
    deadline = time.monotonic() + 300
    while not any(k.endswith(".done") for k in ec2_project.s3_keys(f"{name}/markers/")):
        assert process.poll() is None and time.monotonic() < deadline, "no clip finished before the notice"
        time.sleep(0.1)
    ec2_project.imds.interrupt()
    assert instance_sandbox.finish(backend, first, process) == 75  # EXIT_STOPPED
    assert instance_sandbox.shutdown_log.read_text().splitlines()[-1] == "-h now"
    generated_first = generated_hashes(ec2_project, name)

    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name)
    states = backend.poll(sweep, sweep.read_manifest())
    done = {job_id for job_id, state in states.items() if state == JobState.DONE}
    left = {job_id for job_id, state in states.items() if state == JobState.FAILED}
    assert done and left and done | left == job_ids
    launch = sweep.read_manifest().jobs[next(iter(left))].launch
    for job_id in left:
        key = f"musicsweep/{name}/markers/{job_id}.{launch}.failed"
        reason = ec2_project.bucket.server.client().get_object(Bucket=ec2_project.bucket.name, Key=key)["Body"].read()
        assert b"spot interruption notice" in reason

    ec2_project.imds.notice = None  # the new instance gets no notice
    manifest = sweep.read_manifest()
    verdict = judge(observe(sweep, manifest, backend, config), manifest, config, sweep, states, time.time() + 60)
    assert set(verdict.ready) == left  # an interruption is worth a retry, once its backoff has passed
    assert set(relaunch_jobs(config, sweep, backend, verdict.ready, manifest).started) == left
    second = live_instance(ec2_project, name)
    assert second != first
    launches = sweep.read_manifest().launches
    assert [entry.jobs for entry in launches] == [6, len(left)]
    assert instance_sandbox.run(backend, second) == 0
    generated = generated_hashes(ec2_project, name)  # the second instance's own log, beside the first's
    assert sorted(generated) == sorted(job_id[:8] for job_id in left)  # only what was left
    assert_each_clip_once(ec2_project, name, job_ids, generated_first + generated)
    assert set(backend.poll(sweep, sweep.read_manifest()).values()) == {JobState.DONE}


def test_a_spec_swapped_in_the_store_is_refused_unread(
    ec2_project: EC2Project, instance_sandbox: InstanceSandbox, tmp_path: Path
) -> None:
    """Between the launch and the instance's start, one spec in the bucket is replaced by a pickle
    that would create a folder: the instance refuses it with the digest line and finishes the rest."""
    name = ec2_project.sweep_name()
    plan = run_sweep(ec2_variants(3, 1), name, yes=True)
    swapped = plan.jobs[1]
    made = tmp_path / "made-by-the-pickle"
    client, bucket = ec2_project.bucket.server.client(), ec2_project.bucket.name
    client.put_object(
        Bucket=bucket, Key=f"musicsweep/{name}/jobs/{swapped.job_id}.pkl", Body=pickle.dumps(MakesFolder(made))
    )
    backend = ec2_project.backend()
    assert instance_sandbox.run(backend, live_instance(ec2_project, name)) == 1
    assert not made.exists()
    launch = SweepDir(load_config().sweeps_dir, name).read_manifest().launches[-1].id
    key = f"musicsweep/{name}/markers/{swapped.job_id}.{launch}.failed"
    failed = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert failed.startswith(f"permanent failure: {MISMATCH} ") and failed.count("\n") == 1
    others = {job.job_id for job in plan.jobs} - {swapped.job_id}
    assert_each_clip_once(ec2_project, name, others, generated_hashes(ec2_project, name))


def test_a_wheel_swapped_in_the_store_is_never_installed(
    ec2_project: EC2Project, instance_sandbox: InstanceSandbox
) -> None:
    """The wheel in the bucket is replaced after the launch: the instance stops before installing or
    running anything, naming it, and shuts down."""
    name = ec2_project.sweep_name()
    run_sweep(ec2_variants(1, 1), name, yes=True)
    client, bucket = ec2_project.bucket.server.client(), ec2_project.bucket.name
    (wheel,) = [key for key in ec2_project.s3_keys("_packages/") if key.endswith(".whl")]
    client.put_object(Bucket=bucket, Key=f"musicsweep/{wheel}", Body=b"PK not the wheel the launcher built")
    assert instance_sandbox.run(ec2_project.backend(), live_instance(ec2_project, name)) == 1
    assert instance_sandbox.shutdown_log.read_text().splitlines() == ["-h +30", "-h now"]
    [launch] = SweepDir(load_config().sweeps_dir, name).read_manifest().launch_ids()
    log = (ec2_project.instance_root / name / "logs" / worker_log_name(0, launch)).read_text()
    assert f"wheel digest mismatch: refusing to install musicsweep/{wheel}: its sha256 is " in log
    assert "worker exited" not in log and not ec2_project.s3_keys(f"{name}/markers/")
