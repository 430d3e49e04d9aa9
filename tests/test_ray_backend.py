"""The Ray backend on the session's real Ray cluster (tests/fixtures/ray.py) with the tiny model."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from musicsweep.config import load_config
from musicsweep.doctor.backends import ray_checks
from musicsweep.doctor.result import FAIL, OK
from musicsweep.layout import SweepDir
from tests.fixtures.ray import RayTestCluster
from tests.fixtures.s3 import S3Bucket
from tests.fixtures.servers import wait_until
from tests.helpers import wav_info, write_ray_config

pytestmark = pytest.mark.e2e  # every test starts workers on the cluster

MUSICSWEEP = str(Path(sys.executable).parent / "musicsweep")


def cli(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([MUSICSWEEP, *args], capture_output=True, text=True, timeout=timeout_s)


def test_eight_clips_through_launch_and_pull(project: Path, ray_cluster: RayTestCluster) -> None:
    write_ray_config(project, ray_cluster)
    launched = cli("launch", "backend=ray", "sweep.prompts=[a,b,c,d]", "sweep.durations=[1,2]", "name=ray-e2e")
    assert launched.returncode == 0, launched.stderr
    pulled = cli("pull", "ray-e2e")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr

    sweep = SweepDir(load_config().sweeps_dir, "ray-e2e")
    wavs = sorted(sweep.audio.glob("*.wav"))
    assert len(wavs) == 8
    rate = wav_info(wavs[0])[0]
    assert sorted(wav_info(path)[2] for path in wavs) == [rate] * 4 + [2 * rate] * 4  # exact lengths
    with open(sweep.cost_report) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {row["hourly_cost_usd"] for row in rows} == {"0.5"}
    # Each worker's log reaches the store once its worker has exited, just after its last `.done`.
    logs_dir = sweep.root / "logs"
    wait_until(
        lambda: (
            "".join(p.read_text() for p in logs_dir.glob("worker_*.log")).count("] worker finished with status") == 2
        ),
        60,
        "logs",
    )
    logs = "".join(path.read_text() for path in sorted(logs_dir.glob("worker_*.log")))
    assert sorted(line.split("] uploaded ")[1].strip() for line in logs.splitlines() if "] uploaded " in line) == [
        path.name for path in wavs
    ]


def test_doctor_names_every_problem_of_a_wrong_configuration_in_one_run(
    project: Path, ray_cluster: RayTestCluster, moto_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another Ray version here, more GPUs and a resource no node has, and a store the nodes cannot
    reach (an S3 server on this side of the cluster's network namespace): one doctor run, each named."""
    write_ray_config(project, ray_cluster, num_gpus=3, resources={"nonesuch": 1})
    config = yaml.safe_load((project / "musicsweep.yaml").read_text())
    endpoint = moto_bucket.server.endpoint_url
    config["store"] = {"url": moto_bucket.url, "endpoint_url": endpoint, "region": "us-east-1", "outage_budget_s": 0}
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setattr("musicsweep.backends.ray.backend.local_ray_version", lambda: "2.0.0")

    rows = {row.name: row for row in ray_checks(load_config(), fix=False)}
    assert [(name, row.status) for name, row in rows.items()] == [
        ("ray address", OK),
        ("ray version", FAIL),
        ("ray resources", FAIL),
        ("ray store", FAIL),
    ]
    assert "runs Ray 2.60.0, this launcher Ray 2.0.0" in rows["ray version"].detail
    resources = rows["ray resources"].detail
    assert "backends.ray.num_gpus" in resources and "backends.ray.resources.nonesuch" in resources
    assert "key 'store'" in rows["ray store"].detail and moto_bucket.url in rows["ray store"].detail
