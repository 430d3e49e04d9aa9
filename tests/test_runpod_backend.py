"""RunPod pod provisioning against the GraphQL stand-in and a real loopback sshd (no workers run):
GPU fallback on no capacity, the readiness deadline, a 502, bad input, and `--cleanup`."""

from __future__ import annotations

import base64
import subprocess

import pytest

from musicsweep.backends.base import Launch, Shard
from musicsweep.backends.runpod.api import RunPodAPI
from musicsweep.backends.runpod.backend import RunPodBackend
from musicsweep.backends.runpod.ledger import PodLedger, PodRecord
from musicsweep.backends.runpod.poll import gone_pod_states
from musicsweep.backends.runpod.scripts import BOOT_SCRIPT
from musicsweep.config import load_config
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir, done_marker, failed_marker
from musicsweep.manifest import JobEntry, Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from tests.fixtures.runpod_graphql import ACCOUNT_KEY, RunPodProject


def provisioning(workers: int = 1) -> tuple[RunPodBackend, Launch, list[Shard]]:
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, "pods")
    shards = [Shard(f"runpod-{index}", index, []) for index in range(workers)]
    return RunPodBackend(config), Launch(sweep, "L1", False, {}), shards


def decode(value: str) -> str:
    return base64.b64decode(value).decode()


def test_no_capacity_on_the_first_type_moves_to_the_next(runpod_project: RunPodProject) -> None:
    standin = runpod_project.standin
    standin.no_capacity.add("NVIDIA L40S")
    backend, launch, shards = provisioning()
    backend.validate()
    ready = backend.pods.provision(PodLedger(launch.sweep), launch, shards)
    record = ready[0]
    assert record.gpu_type == "NVIDIA RTX A6000" and record.cost_per_hr == pytest.approx(0.49)
    assert [op for op in standin.operations if op.startswith("deploy")] == [
        "deploy NVIDIA L40S",
        "deploy NVIDIA RTX A6000",
    ]
    pod = standin.pods[record.pod_id]
    assert pod.inputs["ports"] == "22/tcp" and pod.inputs["cloudType"] == "SECURE"
    assert pod.inputs["supportPublicIp"] == "true" and pod.inputs["startSsh"] == "true"
    public_key = runpod_project.keys.client_key.with_suffix(".pub").read_text().strip()
    assert decode(pod.env["PUBLIC_KEY"]) == public_key
    boot = decode(pod.docker_args.removeprefix("bash -c 'echo ").removesuffix(" | base64 -d | bash'"))
    assert boot == BOOT_SCRIPT
    assert subprocess.run(["bash", "-n"], input=boot, text=True).returncode == 0
    assert record.ssh_host().port == runpod_project.server.port
    backend.cancel(launch.sweep, Manifest())
    assert standin.live_pods() == []


def test_a_pod_without_public_port_is_terminated_at_its_deadline(runpod_project: RunPodProject) -> None:
    standin = runpod_project.standin
    standin.never_public.add("NVIDIA L40S")
    runpod_project.configure(ready_timeout_s=1)
    backend, launch, shards = provisioning()
    ledger = PodLedger(launch.sweep)
    ready = backend.pods.provision(ledger, launch, shards)
    first = next(r for r in ledger.pods.values() if r.gpu_type == "NVIDIA L40S")
    assert first.ended is not None and first.terminated_by == "not ready within 1s"
    assert f"podTerminate {first.pod_id}" in standin.operations
    assert ready[0].gpu_type == "NVIDIA RTX A6000"
    assert [pod.id for pod in standin.live_pods()] == [ready[0].pod_id]
    assert first.pod_id in ledger.costs_path.read_text()
    backend.cancel(launch.sweep, Manifest())
    (paid,) = backend.billing.machine_times(launch.sweep, Manifest()).values()  # the discarded pod was paid for too
    pods = PodLedger(launch.sweep).pods.values()
    assert paid.cost_usd == pytest.approx(sum((r.ended - r.created) * r.cost_per_hr / 3600 for r in pods))
    assert paid.start == first.created


def test_a_502_while_provisioning_is_retried(runpod_project: RunPodProject) -> None:
    runpod_project.standin.fail_next = [502, 502]
    backend, launch, shards = provisioning(2)
    ready = backend.pods.provision(PodLedger(launch.sweep), launch, shards)
    assert sorted(ready) == [0, 1]
    backend.cancel(launch.sweep, Manifest())
    assert runpod_project.standin.live_pods() == []


def test_when_no_type_works_the_launch_fails_and_nothing_runs(runpod_project: RunPodProject) -> None:
    standin = runpod_project.standin
    standin.no_capacity.add("NVIDIA L40S")
    standin.never_public.add("NVIDIA RTX A6000")
    runpod_project.configure(ready_timeout_s=0.5)
    backend, launch, shards = provisioning(2)
    with pytest.raises(MusicsweepError, match="gpu_types: no pod became ready"):
        backend.submit(launch, shards)
    assert standin.live_pods() == []
    assert all(not record.live for record in PodLedger(launch.sweep).pods.values())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"gpu_types": ["NVIDIA L40S", "NVIDIA H9000"]}, "key 'backends.runpod'.gpu_types: unknown GPU type"),
        ({"cloud_type": "SPOT"}, "key 'backends.runpod'.cloud_type: expected one of"),
        ({"identity_file": "/nonexistent/key"}, "key 'backends.runpod'.identity_file: no such file"),
        ({"remote_dir": "/workspace/{pod}"}, "key 'backends.runpod'.remote_dir: only '{pod_id}'"),
        ({"pods": 0}, "key 'backends.runpod'.pods: must be at least 1"),
    ],
)
def test_bad_input_fails_before_any_pod_is_created(runpod_project: RunPodProject, settings, message) -> None:
    runpod_project.configure(**settings)
    backend, _, _ = provisioning()
    with pytest.raises(MusicsweepError, match=message.replace("(", r"\(").replace(".", r"\.")):
        backend.validate()
    assert not [op for op in runpod_project.standin.operations if op.startswith("deploy")]


def test_a_local_store_or_missing_credentials_are_refused(runpod_project: RunPodProject, monkeypatch) -> None:
    backend, _, _ = provisioning()
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(MusicsweepError, match="AWS_SECRET_ACCESS_KEY"):
        backend.validate()
    config = load_config()
    local = config.with_overrides(store=type(config.store)(url=str(runpod_project.folder / "runs")))
    with pytest.raises(MusicsweepError, match="key 'store': the runpod backend needs an s3:// store"):
        RunPodBackend(local).validate()


def test_cleanup_terminates_every_pod_named_after_the_sweep(runpod_project: RunPodProject) -> None:
    api = RunPodAPI(ACCOUNT_KEY)
    options = {"image_name": "runpod/pytorch:test", "cloud_type": "SECURE"}
    names = ["musicsweep s1 L1 w0", "musicsweep s1 L2 w3", "musicsweep s10 L1 w0", "my own pod"]
    ids = {name: api.create_pod(name, "NVIDIA L40S", **options) for name in names}
    backend, _, _ = provisioning()
    sweep = SweepDir(load_config().sweeps_dir, "s1")
    backend.cleanup(sweep, Manifest())
    assert sorted(pod.name for pod in runpod_project.standin.live_pods()) == ["musicsweep s10 L1 w0", "my own pod"]
    ledger = PodLedger(sweep)
    assert {r.pod_id for r in ledger.pods.values() if r.terminated_by == "cleanup"} == {
        ids["musicsweep s1 L1 w0"],
        ids["musicsweep s1 L2 w3"],
    }
    assert not [op for op in runpod_project.standin.operations if op.startswith("podStop")]


def test_auto_pull_terminates_a_pod_once_its_jobs_are_done_and_an_unreachable_pod_is_lost(
    runpod_project: RunPodProject,
) -> None:
    backend, launch, shards = provisioning()
    (record,) = backend.pods.provision(PodLedger(launch.sweep), launch, shards).values()
    manifest = Manifest(jobs={job_id: JobEntry(worker=0, launch="L1") for job_id in ("aaaa0001", "aaaa0002")})
    runpod_project.server.stop()
    assert backend.poll(launch.sweep, manifest) == dict.fromkeys(manifest.jobs, "lost")
    runpod_project.server.start()
    store = open_store(load_config().store)
    store.put_bytes("pods/markers/aaaa0001.done", b"1\n")
    store.put_bytes("pods/markers/aaaa0002.L1.failed", b"Traceback\n")
    before = PodLedger(launch.sweep).path.read_bytes()
    assert backend.poll(launch.sweep, manifest) == {"aaaa0001": "done", "aaaa0002": "failed"}
    assert f"podTerminate {record.pod_id}" not in runpod_project.standin.operations, "poll is read-only"
    assert PodLedger(launch.sweep).path.read_bytes() == before
    backend.reconcile(launch.sweep, manifest)
    assert f"podTerminate {record.pod_id}" in runpod_project.standin.operations
    assert runpod_project.standin.live_pods() == []
    ended = PodLedger(launch.sweep).pods[record.pod_id]
    assert ended.terminated_by == "all its jobs finished"
    assert backend.poll(launch.sweep, manifest) == {"aaaa0001": "done", "aaaa0002": "failed"}
    (times,) = backend.billing.machine_times(launch.sweep, manifest).values()
    assert times.hourly_cost_usd == pytest.approx(0.86) and times.end == ended.ended


def test_a_pod_whose_jobs_were_all_relaunched_elsewhere_is_terminated(runpod_project: RunPodProject) -> None:
    backend, launch, shards = provisioning()
    (record,) = backend.pods.provision(PodLedger(launch.sweep), launch, shards).values()
    launch.sweep.write_manifest(Manifest(jobs={"aaaa0001": JobEntry(worker=0, launch="L2")}))
    stale_copy = Manifest(jobs={"aaaa0001": JobEntry(worker=0, launch="L1")})  # auto_pull's copy from before
    assert backend.poll(launch.sweep, stale_copy) == {"aaaa0001": "lost"}
    assert runpod_project.standin.live_pods() != []  # poll only notes it
    backend.reconcile(launch.sweep, stale_copy)
    assert PodLedger(launch.sweep).pods[record.pod_id].terminated_by == "its jobs were relaunched elsewhere"
    assert runpod_project.standin.live_pods() == []


def test_a_terminated_pods_jobs_read_their_markers_before_its_last_poll() -> None:
    """A pod whose worker exited while another pod made a clip it took from this pod's shard: the
    last poll saw that job unfinished, the `.done` came after the pod was gone, and done wins."""
    record = PodRecord("p1", "pods-1", "NVIDIA L40S", "L1", 1, 0.0, final_states={"a": "failed", "b": "done"})
    markers = {done_marker("a"), done_marker("b"), failed_marker("c", "L1")}
    states = gone_pod_states(record, ["a", "b", "c", "d"], markers)
    assert states == {"a": JobState.DONE, "b": JobState.DONE, "c": JobState.FAILED, "d": JobState.LOST}
