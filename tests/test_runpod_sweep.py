"""RunPod sweeps end to end on the tiny model: pods from the GraphQL stand-in, whose public port 22
is a real loopback sshd, results in S3 (moto over HTTP), driven by auto_pull."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from musicsweep.backends import get_backend
from musicsweep.backends.runpod.ledger import PodLedger
from musicsweep.cli.pull import pull
from musicsweep.cli.run import run_sweep
from musicsweep.config import load_config
from musicsweep.costs.calibration import load_calibration
from musicsweep.costs.rows import read_cost_report
from musicsweep.layout import SweepDir
from musicsweep.states import JobState
from tests.fixtures.runpod_graphql import ACCOUNT_KEY, RunPodProject
from tests.fixtures.s3 import SECRET_KEY
from tests.fixtures.servers import wait_until
from tests.helpers import wav_info


def variants(count: int) -> list[dict]:
    return [{"prompt": f"pod tune {i}", "duration_s": 2, "model": "tiny", "seed": i} for i in range(count)]


def files_under(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*") if path.is_file()]


def test_a_sweep_runs_on_pods_and_every_pod_is_terminated(runpod_project: RunPodProject) -> None:
    standin = runpod_project.standin
    standin.fail_next = [502]  # the first API call of the launch meets a gateway error
    runpod_project.configure(pods=2)
    run_sweep(variants(2), "pod-sweep", yes=True)
    assert pull("pod-sweep", interval_s=1) == 0

    sweep = SweepDir(load_config().sweeps_dir, "pod-sweep")
    wavs = sorted(sweep.audio.glob("*.wav"))
    assert len(wavs) == 2 and all(wav_info(path) == (32000, 1, 64000) for path in wavs)
    assert standin.live_pods() == []
    pods = PodLedger(sweep).pods.values()
    assert len(pods) == 2 and all(not record.live for record in pods)
    # The backstop: each pod's script asked, with its pod-scoped key, to terminate its own pod.
    wait_until(lambda: set(standin.self_terminated) >= {record.pod_id for record in pods}, 30, "self-termination")
    assert not [op for op in standin.operations if op.startswith("podStop")]

    rows = read_cost_report(sweep.cost_report)
    assert len(rows) == 2 and {float(row["hourly_cost_usd"]) for row in rows} == {0.86}
    summary = json.loads(sweep.cost_summary.read_text())
    lifetimes = sum((record.ended - record.created) for record in pods)
    assert summary["paid_usd"] == pytest.approx(lifetimes * 0.86 / 3600, rel=1e-6)
    # The estimate counted each pod's boot; the calibration learned it from the pods' own lifetimes.
    assert summary["estimate"]["parts"]["boot"] > 0 and summary["measured_parts"]["boot"] > 0
    [(key, samples)] = load_calibration().entries.items()
    assert (key.backend, key.machine, key.model) == ("runpod", "NVIDIA L40S", "tiny") and samples[0]["boot_s"] > 0

    pod_keys = [pod.pod_key for pod in standin.pods.values()]
    secrets = [SECRET_KEY, ACCOUNT_KEY, *pod_keys]
    scanned = files_under(runpod_project.folder, runpod_project.server.folder, standin.record_dir)
    assert any(path.name.endswith(".sh") for path in scanned) and any(path.suffix == ".log" for path in scanned)
    assert len(standin.bodies()) > 10
    for path in scanned:
        data = path.read_bytes()
        leaked = [secret for secret in secrets if secret.encode() in data]
        assert not leaked, f"{path} holds a secret"


def test_a_pod_that_dies_mid_sweep_loses_its_jobs_until_they_are_relaunched(runpod_project: RunPodProject) -> None:
    standin = runpod_project.standin
    # Lost jobs are relaunched once their lease has expired and their backoff passed: 20 s and 1 s
    # to wait out, not the default 300 s and 30 s.
    runpod_project.configure(recovery={"lease_s": 20, "backoff_s": 1})
    run_sweep(variants(2), "dying", yes=True)
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, "dying")
    (record,) = PodLedger(sweep).pods.values()
    jobs = Path(record.host["remote_dir"]) / "runs" / "dying" / "jobs"
    wait_until(lambda: len(list(jobs.glob("*.pid"))) == 2, 60, "the worker's pid files")
    pgid = int(next(jobs.glob("*.pid")).read_text().split()[1])
    standin.die(record.pod_id)  # the pod's machine fails, and its processes with it
    os.killpg(pgid, signal.SIGKILL)

    manifest = sweep.read_manifest()
    backend = get_backend("runpod", config)
    assert set(backend.poll(sweep, manifest).values()) == {JobState.LOST}
    backend.reconcile(sweep, manifest)  # poll only observes; auto_pull's reconcile step terminates
    assert standin.live_pods() == []  # the exited pod still billed for its disk: terminated
    assert pull("dying", interval_s=1, relaunch_failed=True) == 0

    assert len(list(sweep.audio.glob("*.wav"))) == 2
    records = PodLedger(sweep).pods.values()
    assert len(records) == 2 and len({r.launch_id for r in records}) == 2
    assert standin.live_pods() == []
    assert len(read_cost_report(sweep.cost_report)) == 2
