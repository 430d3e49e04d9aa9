"""Launch, tag lookup, describe, poll and terminate against moto_server's EC2 API over HTTP."""

from __future__ import annotations

import shutil

import pytest

from musicsweep import run_sweep
from musicsweep.backends.base import DONE, FAILED, RUNNING
from musicsweep.config import load_config
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir
from tests.fixtures.ec2 import PROFILE, EC2Project
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY


def variants(count: int) -> list[dict]:
    return [{"prompt": f"ambient pad {i}", "duration_s": 2, "model": "tiny", "seed": i} for i in range(count)]


def test_dry_run_then_launch_tags_describe_poll_cleanup(ec2_project: EC2Project, capsys) -> None:
    ec2_project.configure(instances=2)
    name = ec2_project.sweep_name()
    backend = ec2_project.backend()
    run_sweep(variants(3), name, dry_run=True)
    out = capsys.readouterr().out
    assert "spot g5.xlarge: us-east-1a $0.0000" in out and "2 instance(s)" in out
    assert backend.instances(name) == [] and not (ec2_project.folder / "runs").exists()

    run_sweep(variants(3), name, yes=True)
    instances = backend.instances(name)
    assert len(instances) == 2
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
    assert len(volumes["Volumes"]) == 2
    keys = ec2_project.s3_keys("")
    assert sum(key.startswith("_packages/") and key.endswith(".whl") for key in keys) == 1
    assert sum(key.startswith(f"{name}/jobs/") for key in keys) == 3
    assert sum(key.startswith(f"{name}/launches/") for key in keys) == 2

    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name)
    manifest = sweep.read_manifest()
    assert len(manifest["backend_state"]["ec2_instances"]) == 2
    states = backend.poll(sweep, manifest)
    assert set(states.values()) == {RUNNING}

    # Launching the same sweep from another machine (no local manifest) must not start a second fleet.
    shutil.rmtree(sweep.root)
    with pytest.raises(MusicsweepError, match="already runs .* not starting a second fleet"):
        run_sweep(variants(3), name, yes=True)
    assert len(backend.instances(name)) == 2
    sweep.write_manifest(manifest)

    # One clip finished; the instance of worker 0 died: its unfinished clips count as failed.
    done_id = next(job_id for job_id, entry in manifest["jobs"].items() if entry["worker"] == 1)
    ec2_project.bucket.server.client().put_object(
        Bucket=ec2_project.bucket.name, Key=f"musicsweep/{name}/markers/{done_id}.done", Body=b"1\n"
    )
    worker0 = next(
        i["InstanceId"] for i in instances if i["Tags"] and {"Key": "musicsweep-worker", "Value": "0"} in i["Tags"]
    )
    backend.client.terminate_instances(InstanceIds=[worker0])
    states = backend.poll(sweep, manifest)
    for job_id, entry in manifest["jobs"].items():
        expected = DONE if job_id == done_id else FAILED if entry["worker"] == 0 else RUNNING
        assert states[job_id] == expected

    backend.cleanup(sweep, manifest)
    assert {i["State"]["Name"] for i in backend.instances(name)} == {"terminated"}
    times = backend.machine_times(sweep, manifest)
    assert len(times) == 2 and all(t.end >= t.start for t in times.values())
