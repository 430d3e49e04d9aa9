"""Launch, tag lookup, describe, poll and terminate against moto_server's EC2 API over HTTP."""

from __future__ import annotations

import shutil

import pytest

from musicsweep import run_sweep
from musicsweep.config import load_config
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir
from musicsweep.states import JobState
from tests.fixtures.ec2 import PROFILE, EC2Project
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY


def variants(count: int) -> list[dict]:
    return [{"prompt": f"ambient pad {i}", "duration_s": 2, "model": "tiny", "seed": i} for i in range(count)]


def test_dry_run_then_launch_tags_describe_poll_cleanup(ec2_project: EC2Project, capsys) -> None:
    ec2_project.configure(instances=3)
    name = ec2_project.sweep_name()
    backend = ec2_project.backend()
    run_sweep(variants(4), name, dry_run=True)
    out = capsys.readouterr().out
    assert "spot g5.xlarge: us-east-1a $0.0000" in out and "3 instance(s)" in out
    assert backend.instances(name) == [] and not (ec2_project.folder / "runs").exists()

    run_sweep(variants(4), name, yes=True)
    instances = backend.instances(name)
    assert len(instances) == 3
    for instance in instances:
        assert instance["InstanceLifecycle"] == "spot"
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{PROFILE}")
        behavior = backend.client.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
        )
        assert behavior["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        script = backend.user_data(instance["InstanceId"])
        assert len(script.encode()) < 16 * 1024 and "shutdown -h now" in script
        assert ACCESS_KEY not in script and SECRET_KEY not in script
    volumes = backend.client.describe_volumes(Filters=[{"Name": "tag:musicsweep-sweep", "Values": [name]}])
    assert len(volumes["Volumes"]) == 3
    keys = ec2_project.s3_keys("")
    assert sum(key.startswith("_packages/") and key.endswith(".whl") for key in keys) == 1
    assert sum(key.startswith(f"{name}/jobs/") and key.endswith(".pkl") for key in keys) == 4
    assert sum(key.startswith(f"{name}/jobs/specs-") and key.endswith(".sha256") for key in keys) == 1
    assert sum(key.startswith(f"{name}/launches/") for key in keys) == 3

    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name)
    manifest = sweep.read_manifest()
    assert len(manifest.backend_state["ec2_instances"]) == 3
    states = backend.poll(sweep, manifest)
    assert set(states.values()) == {JobState.RUNNING}
    instance_of = {int(backend_tag(i, "musicsweep-worker")): i["InstanceId"] for i in instances}
    for worker_id, instance_id in instance_of.items():
        script = sweep.worker(worker_id).script  # a local copy of what each instance was given
        assert script.stat().st_mode & 0o777 == 0o700
        assert script.read_text() == backend.user_data(instance_id)

    # Launching the same sweep from another machine (no local manifest) must not start a second fleet.
    shutil.rmtree(sweep.root)
    with pytest.raises(MusicsweepError, match="already runs .* not starting a second fleet"):
        run_sweep(variants(4), name, yes=True)
    assert len(backend.instances(name)) == 3
    sweep.write_manifest(manifest)

    # Worker 1 finished its one clip but its instance is still up: an orphan, terminated by kill_orphans.
    # Worker 0 finished one clip, then its instance died: the other clip counts as failed.
    # Worker 2 is still running; cleanup at the end terminates it.
    by_worker: dict[int, list[str]] = {}
    for job_id, entry in sorted(manifest.jobs.items()):
        by_worker.setdefault(entry.worker, []).append(job_id)
    for job_id in (by_worker[1][0], by_worker[0][0]):
        ec2_project.bucket.server.client().put_object(
            Bucket=ec2_project.bucket.name, Key=f"musicsweep/{name}/markers/{job_id}.done", Body=b"1\n"
        )
    backend.client.terminate_instances(InstanceIds=[instance_of[0]])
    states = backend.poll(sweep, manifest)
    assert states == {
        by_worker[0][0]: JobState.DONE,
        by_worker[0][1]: JobState.FAILED,
        by_worker[1][0]: JobState.DONE_ORPHANS,
        by_worker[2][0]: JobState.RUNNING,
    }
    backend.kill_orphans(sweep, manifest, [by_worker[1][0]])
    live = backend.instances(name, ("pending", "running"))
    assert [i["InstanceId"] for i in live] == [instance_of[2]]

    backend.cleanup(sweep, manifest)
    assert {i["State"]["Name"] for i in backend.instances(name)} == {"terminated"}
    times = backend.billing.machine_times(sweep, manifest)
    assert len(times) == 3 and all(t.end >= t.start for t in times.values())


def backend_tag(instance: dict, key: str) -> str:
    return next(tag["Value"] for tag in instance["Tags"] if tag["Key"] == key)
