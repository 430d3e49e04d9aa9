"""The Ray backend on the session's real Ray cluster (tests/fixtures/ray.py) with the tiny model."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from musicsweep.config import load_config
from musicsweep.layout import SweepDir
from tests.fixtures.ray import RayTestCluster
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
