"""Each backend's typed record reads the `backend_state` an existing manifest.json holds, and writes
it back unchanged, so a sweep launched before the records existed is still polled and billed."""

from __future__ import annotations

import json

from musicsweep.backends.ec2.state import EC2Instances
from musicsweep.backends.slurm.state import SlurmArrays
from musicsweep.backends.ssh import SSHHosts
from musicsweep.manifest import JobEntry, Manifest

WRITTEN_BEFORE = {
    "ssh_hosts": {
        "gpu-a": {
            "host": "127.0.0.2",
            "remote_dir": "/tmp/ms",
            "port": 2222,
            "user": "me",
            "identity_file": None,
            "name": "gpu-a",
            "slots": 1,
            "gpus": 2,
            "hourly_cost_usd": 0.5,
            "python": None,
            "setup": None,
            "env": ["HF_TOKEN"],
            "ssh_options": [],
            "retries": 2,
            "backoff_s": 0.5,
            "connect_timeout_s": 10,
        }
    },
    "slurm_arrays": {"L1": {"array_job_id": "41", "tasks": {"0": ["aaaa0001"], "1": ["aaaa0002", "aaaa0003"]}}},
    "ec2_instances": {
        "i-0abc": {
            "launch": "L1",
            "worker": 0,
            "instance_type": "g5.xlarge",
            "zone": "us-east-1a",
            "market": "spot",
            "hourly_usd": 0.42,
        }
    },
}


def old_manifest() -> Manifest:
    payload = {
        "sweep": "s",
        "jobs": {
            job_id: {"prompt": "p", "duration_s": 1.0, "output_name": f"{job_id}.wav", "launch": "L1", "worker": 0}
            for job_id in ("aaaa0001", "aaaa0002", "aaaa0003")
        },
        "backend_state": json.loads(json.dumps(WRITTEN_BEFORE)),
    }
    return Manifest.from_json(payload)


def test_records_read_an_existing_manifest_and_write_it_back_unchanged() -> None:
    manifest = old_manifest()
    hosts = manifest.state_of(SSHHosts).hosts
    assert hosts["gpu-a"].workers == 2 and hosts["gpu-a"].env == ("HF_TOKEN",)
    arrays = manifest.state_of(SlurmArrays)
    assert arrays.array_ids() == ["41"]
    assert arrays.task_of_jobs(manifest) == {"aaaa0001": "41_0", "aaaa0002": "41_1", "aaaa0003": "41_1"}
    (instance,) = manifest.state_of(EC2Instances).started.values()
    assert (instance.key, instance.instance_type, instance.hourly_usd) == (("L1", 0), "g5.xlarge", 0.42)

    for record in (SSHHosts, SlurmArrays, EC2Instances):
        manifest.keep_state(manifest.state_of(record))
    assert json.loads(json.dumps(manifest.to_json()["backend_state"])) == WRITTEN_BEFORE


def test_a_backend_without_a_record_yet_reads_empty_and_none_keeps_nothing() -> None:
    manifest = Manifest(jobs={"aaaa0001": JobEntry(output_name="a.wav", launch="L1", worker=0)})
    assert manifest.state_of(SlurmArrays).task_of_jobs(manifest) == {}
    assert manifest.state_of(SSHHosts).hosts == {} and manifest.state_of(EC2Instances).started == {}
    manifest.keep_state(None)  # RunPod keeps its pods in its own ledger
    assert manifest.backend_state == {}
