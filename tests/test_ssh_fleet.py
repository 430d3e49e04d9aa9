"""Dynamic assignment over SSH with an S3 store: a host's worker dies, the other host finishes its clips.

Two real sshd hosts on 127.0.0.2 and 127.0.0.3, a moto S3 store, real workers on the tiny model
(1 s clips, batch size 1). Host 1's worker is SIGKILLed once it holds a claim and before it has
generated anything; host 0's worker makes its own shard, then every clip of the dead one's, with no
relaunch. The loopback hosts share this machine's host name, so the dead worker's claim is taken
over by the dead-owner rule at once (`tests/test_worker_pool.py` covers the lease of another host).
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path

import yaml

from musicsweep.cli.run import run_sweep
from musicsweep.config import load_config
from musicsweep.layout import SweepDir, worker_log_name
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.servers import wait_until
from tests.fixtures.sshd import SSHServer
from tests.helpers import generated_names, open_bucket_store, taken_names

AWS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"]


def write_config(project: Path, servers: list[SSHServer], bucket: S3Bucket) -> None:
    env = ["HF_HUB_OFFLINE", "MUSICSWEEP_HEARTBEAT_S", "AWS_SHARED_CREDENTIALS_FILE", *AWS]
    config = {
        "backend": "ssh",
        "store": {"url": bucket.url, "endpoint_url": bucket.server.endpoint_url, "region": "us-east-1"},
        "sweeps_dir": "./runs",
        "engine": {"batch_size": 1},
        "recovery": {"lease_s": 6},
        "backends": {"ssh": {"hosts": [server.entry(python=sys.executable, env=env) for server in servers]}},
    }
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))


def test_a_killed_hosts_clips_are_finished_by_the_other_host(
    project: Path, ssh_hosts: list[SSHServer], moto_bucket: S3Bucket
) -> None:
    write_config(project, ssh_hosts, moto_bucket)
    variants = [{"prompt": f"far {i}", "duration_s": 1, "model": "tiny", "seed": i} for i in range(12)]
    plan = run_sweep(variants, name="far")
    by_worker = {shard.worker_id: [job.job_id for job in shard.jobs] for shard in plan.shards}
    assert sorted(by_worker) == [0, 1] and [len(ids) for ids in by_worker.values()] == [6, 6]
    folders = [server.root / "remote/runs/far" for server in ssh_hosts]
    store = open_bucket_store(moto_bucket)

    def victim_claimed() -> bool:
        return any(store.list(f"far/claims/{job_id}/") for job_id in by_worker[1])

    wait_until(victim_claimed, 240, "host 1's worker to claim its first clip")
    pgid = int(next((folders[1] / "jobs").glob("*.pid")).read_text().split()[1])
    os.killpg(pgid, signal.SIGKILL)  # while it loads the model: it holds one claim and has made nothing

    def all_done() -> bool:
        return sum(key.endswith(".done") for key in store.list("far/markers/")) == 12

    wait_until(all_done, 240, "every clip done")
    [launch] = SweepDir(load_config().sweeps_dir, "far").read_manifest().launch_ids()
    survivor_log = folders[0] / "logs" / worker_log_name(0, launch)
    wait_until(lambda: "worker finished with status 0" in survivor_log.read_text(), 60, "host 0's worker to exit")
    victim = (folders[1] / "logs" / worker_log_name(1, launch)).read_text()
    survivor = survivor_log.read_text()
    made = Counter(generated_names(survivor) + generated_names(victim))
    assert len(made) == 12 and set(made.values()) == {1}, made
    assert generated_names(victim) == []
    names = {job.job_id: job.output_name for job in plan.jobs}
    assert sorted(taken_names(survivor)) == sorted(names[job_id] for job_id in by_worker[1])
    assert len(SweepDir(load_config().sweeps_dir, "far").read_manifest().launches) == 1, "nothing relaunched"
