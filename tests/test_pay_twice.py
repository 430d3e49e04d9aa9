"""Never pay twice (issue 16): claims with leases, attempts, launched-with settings, read-only polls.

End-to-end tests run the real worker on the tiny model with 1 s clips and count generations from
the workers' own logs (one `uploaded NAME` line per generated clip), not just the final state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from musicsweep import MusicsweepError, run_sweep
from musicsweep.backends.base import Backend
from musicsweep.backends.runpod.api import Pod, Retry, RunPodAPI
from musicsweep.billing import MachineTime
from musicsweep.cli.auto_pull import pull
from musicsweep.cli.main import main as musicsweep_main
from musicsweep.config import Config, RecoveryConfig, StoreConfig, load_config
from musicsweep.costs.summary import summarize
from musicsweep.job import Job
from musicsweep.layout import SweepDir
from musicsweep.manifest import JobEntry, LaunchRecord, Manifest
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.sweep.observe import observe, stall_after_s
from musicsweep.sweep.plan import jobs_from_variants, launch, make_plan
from musicsweep.worker.claims import Claims, Owner, current_claim
from tests.fixtures.s3 import S3Bucket
from tests.helpers import wait_for_sweep

COLLIDING = [  # job ids of 32 bits collided for this pair (both 1 s clips on tiny)
    {"prompt": "prompt number 51", "duration_s": 1, "model": "tiny", "seed": 6},
    {"prompt": "prompt number 85", "duration_s": 1, "model": "tiny", "seed": 75},
]


def clips(count: int, **extra) -> list[dict]:
    return [{"prompt": f"pay once {i}", "duration_s": 1, "model": "tiny", "seed": i, **extra} for i in range(count)]


def uploads(sweep_root: Path) -> int:
    """Generated clips, from every worker log of the sweep (logs are appended across launches)."""
    return sum(log.read_text().count("] uploaded ") for log in (sweep_root / "logs").glob("worker_*.log"))


def set_recovery(project: Path, **values: object) -> None:
    lines = "".join(f"  {key}: {value}\n" for key, value in values.items())
    path = project / "musicsweep.yaml"
    path.write_text(path.read_text() + "recovery:\n" + lines)


# ---- unit level


def test_job_ids_are_16_hex_and_the_32_bit_collision_is_gone() -> None:
    first, second = jobs_from_variants(COLLIDING, "s")
    assert first.job_id[:8] == second.job_id[:8], "the reported 32-bit collision"
    assert first.job_id != second.job_id and len(first.job_id) == 16
    assert first.output_name == f"prompt_number_51_{first.job_id[:8]}.wav"  # hash8 stays in the file name


def test_a_job_id_collision_is_refused_at_plan_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Job, "job_id", property(lambda job: "0" * 16))
    with pytest.raises(MusicsweepError, match=r"variant 1: job id 0{16} collides with variant 0 \(different audio\)"):
        jobs_from_variants(COLLIDING, "s")


@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_claims_exclude_any_other_owner_until_the_lease_expires(tmp_path: Path, request, kind: str) -> None:
    if kind == "s3":
        bucket: S3Bucket = request.getfixturevalue("moto_bucket")
        store = open_store(StoreConfig(bucket.url, endpoint_url=bucket.server.endpoint_url, region="us-east-1"))
    else:
        store = open_store(StoreConfig(str(tmp_path / "store")))
    # Other hosts' owners: a dead pid there proves nothing, only the lease counts.
    a = Claims(store, "s", Owner("host-a", 1, "L1", 0), lease_s=1.5)
    b = Claims(store, "s", Owner("host-b", 2, "L2", 0), lease_s=1.5)
    assert a.acquire("job") is None
    held = b.acquire("job")
    assert held is not None and held.owner.launch == "L1"
    time.sleep(1.0)
    a.renew()  # the heartbeat keeps it live past the first expiry
    time.sleep(0.8)
    assert b.acquire("job") is not None
    time.sleep(1.6)  # no renewal: the lease runs out and any launch may take over, exactly once
    assert b.acquire("job") is None
    assert current_claim(store, a.keys, "job").generation == 1
    assert a.renew() == ["job"] and not a.still_held("job")
    b.release("job")
    assert a.acquire("job") is None  # a released claim is free at once


def test_a_live_duplicate_of_the_same_launch_and_worker_on_this_host_is_not_an_earlier_run(tmp_path: Path) -> None:
    store = open_store(StoreConfig(str(tmp_path / "store")))
    duplicate = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        first = Claims(store, "s", Owner("this-host", duplicate.pid, "L1", 0))
        assert first.acquire("job") is None
        second = Claims(store, "s", Owner("this-host", os.getpid(), "L1", 0))
        assert second.acquire("job") is not None, "a live process that ran the same script must keep its claim"
        assert not second.still_held("job")
    finally:
        duplicate.kill()
        duplicate.wait()
    assert second.acquire("job") is None  # once it is gone, it was an earlier run: a requeue resumes at once
    assert current_claim(store, second.keys, "job").generation == 0


class FixedBackend(Backend):
    """A backend whose poll says what the test wants."""

    name = "fixed"

    def __init__(self, config: Config, states: dict[str, JobState]) -> None:
        super().__init__(config)
        self.states = states

    def poll(self, sweep, manifest):
        return dict(self.states)

    shard = submit = kill_orphans = fetch = cancel = None  # type: ignore[assignment]


def test_observe_finds_stalled_lost_never_started_and_failed_launches(tmp_path: Path) -> None:
    recovery = RecoveryConfig(lease_s=60, stall_after_minutes=1, start_timeout_minutes=1)
    config = Config(store=StoreConfig(str(tmp_path)), sweeps_dir=tmp_path, recovery=recovery)
    sweep = SweepDir(tmp_path, "s")
    now = time.time()
    entries = {
        "stalled": JobEntry(worker=0, launch="L1", launched_at=now - 600),
        "busy": JobEntry(worker=1, launch="L1", launched_at=now - 600),
        "lost": JobEntry(worker=2, launch="L1", launched_at=now - 600),
        "never": JobEntry(worker=3, launch="L1", launched_at=now - 120),
        "broken": JobEntry(worker=4, launch="L1", launched_at=now, error="launch L1 failed: setup failed"),
    }
    store = open_store(config.store)
    store.put_json(sweep.keys.heartbeat(0, "L1"), {"time": now, "progress": now - 300})
    store.put_json(sweep.keys.heartbeat(1, "L1"), {"time": now, "progress": now - 10})
    store.put_json(sweep.keys.heartbeat(2, "L1"), {"time": now - 30, "progress": now - 30})
    polled = {"stalled": JobState.RUNNING, "busy": JobState.RUNNING, "lost": JobState.LOST}
    backend = FixedBackend(config, polled | {"never": JobState.PENDING, "broken": JobState.PENDING})
    seen = observe(sweep, Manifest(sweep="s", jobs=entries), backend, config, now=now)
    assert seen.states == {
        "stalled": JobState.STALLED,
        "busy": JobState.RUNNING,
        "lost": JobState.LOST,
        "never": JobState.FAILED,
        "broken": JobState.FAILED,
    }
    assert seen.lease_expires["lost"] == pytest.approx(now + 30)  # last heartbeat + lease
    assert not seen.lease_expired("lost", now) and seen.lease_expired("lost", now + 31)
    assert seen.reasons["never"] == "worker never started within 1 min"
    assert seen.reasons["broken"] == "launch L1 failed: setup failed"


def test_paid_counts_machines_that_never_wrote_a_lifetime() -> None:
    assert summarize([], [], {("L1", 0): MachineTime(0.0, 3600.0, 1.0)}).paid_usd == pytest.approx(1.0)


def test_runpod_terminate_is_verified_after_its_last_call() -> None:
    """The pod is gone only after the last allowed call: that is a success, not 'still not terminated'."""
    api = RunPodAPI.__new__(RunPodAPI)
    api.retry, api.runpod = Retry(attempts=2, backoff_s=0), SimpleNamespace(terminate_pod=None)
    live = Pod("p1", "musicsweep s L1 w0", "RUNNING", 0.5, None)
    answers = iter([live, live, None])
    calls: list[str] = []
    api.get_pod = lambda pod_id: next(answers)  # type: ignore[method-assign]
    api._call = lambda what, function, *args: calls.append(what)  # type: ignore[method-assign]
    assert api.terminate_pod("p1") is True
    assert calls == ["terminate pod p1", "terminate pod p1"]


# ---- end to end on the local backend


def test_the_colliding_pair_gives_two_clips_each_generated_once(project: Path) -> None:
    run_sweep(COLLIDING, name="collide")
    assert set(wait_for_sweep("collide").values()) == {JobState.DONE}
    sweep = project / "runs" / "collide"
    assert len(list((sweep / "audio").glob("*.wav"))) == 2
    assert len(list((sweep / "markers").glob("*.done"))) == 2
    assert uploads(sweep) == 2


def test_a_leftover_failed_from_an_earlier_launch_is_superseded(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("MUSICSWEEP_INJECT_BATCH_FAILURE", "0")  # every generate call fails
    run_sweep(clips(2), name="stale")
    assert set(wait_for_sweep("stale").values()) == {JobState.FAILED}
    monkeypatch.delenv("MUSICSWEEP_INJECT_BATCH_FAILURE")
    run_sweep(clips(2), name="stale")
    assert musicsweep_main(["status", "stale"]) == 3, "the new attempt is not failed while it runs"
    assert pull("stale", interval_s=0.5, orphan_grace_s=0) == 0
    sweep = project / "runs" / "stale"
    assert uploads(sweep) == 2 and len(list((sweep / "audio").glob("*.wav"))) == 2


def test_commands_use_the_store_the_sweep_was_launched_with(project: Path, capsys) -> None:
    elsewhere = project / "elsewhere"
    run_sweep(clips(2), name="moved", store=str(elsewhere))
    config_path = project / "musicsweep.yaml"
    config_path.write_text(config_path.read_text().replace("store: ./runs", "store: ./edited"))
    assert pull("moved", interval_s=0.5, relaunch_failed=True, orphan_grace_s=0) == 0
    out = capsys.readouterr().out
    assert "key 'store' differs from the launch of sweep moved; using the launched value" in out
    assert len(list((elsewhere / "moved" / "audio").glob("*.wav"))) == 2
    assert len(list((project / "runs" / "moved" / "audio").glob("*.wav"))) == 2  # pulled from there
    assert not (project / "edited").exists()
    assert uploads(project / "runs" / "moved") == 2
    assert len(SweepDir(project / "runs", "moved").read_manifest().launches) == 1


def test_a_model_that_cannot_load_is_launched_once_and_reported(project: Path, capsys) -> None:
    run_sweep(clips(2, model="./no-such-model"), name="nomodel")
    started = time.monotonic()
    assert pull("nomodel", interval_s=0.5, relaunch_failed=True, orphan_grace_s=0) == 1
    assert time.monotonic() - started < 120, "--relaunch-failed must end by itself"
    assert len(SweepDir(project / "runs", "nomodel").read_manifest().launches) == 1
    out = capsys.readouterr().out
    assert out.count("permanent failure, not relaunched") == 2  # once per job, not once per poll


def test_a_transient_failure_is_relaunched_at_most_max_attempts_times(project: Path, monkeypatch, capsys) -> None:
    set_recovery(project, max_attempts=2, backoff_s=0.5)
    monkeypatch.setenv("MUSICSWEEP_INJECT_BATCH_FAILURE", "0")  # a simulated OOM: worth a retry, fails again
    run_sweep(clips(1), name="flaky")
    assert pull("flaky", interval_s=0.5, relaunch_failed=True, orphan_grace_s=0) == 1
    manifest = SweepDir(project / "runs", "flaky").read_manifest()
    assert len(manifest.launches) == 2 and [entry.attempts for entry in manifest.jobs.values()] == [2]
    assert "failed 2 attempt(s) (recovery.max_attempts=2)" in capsys.readouterr().out
    assert musicsweep_main(["status", "flaky"]) == 0
    assert "attempt 2/2" in capsys.readouterr().out


def test_kill_stalled_kills_a_hung_worker_once_and_its_clips_are_relaunched(project: Path, monkeypatch, capsys) -> None:
    # 21 s: past the relaunched worker's model load (its first progress), even on a loaded host
    set_recovery(project, stall_after_minutes=0.35, max_attempts=2, backoff_s=0.5)
    monkeypatch.setenv("MUSICSWEEP_TEST_HANG_AT", "load")  # claims held, heartbeat fresh, no progress
    run_sweep(clips(2), name="hung")
    monkeypatch.delenv("MUSICSWEEP_TEST_HANG_AT")  # the relaunched worker runs normally
    sweep = SweepDir(project / "runs", "hung")
    hung_pid = int(sweep.worker(0).pid.read_text())
    assert pull("hung", interval_s=0.5, relaunch_failed=True, kill_stalled=True, orphan_grace_s=0) == 0
    out = capsys.readouterr().out
    assert out.count("killing the stalled worker(s)") == 1
    with pytest.raises(ProcessLookupError):
        os.kill(hung_pid, 0)
    manifest = sweep.read_manifest()
    assert len(manifest.launches) == 2 and [entry.attempts for entry in manifest.jobs.values()] == [2, 2]
    assert len(list((sweep.root / "audio").glob("*.wav"))) == 2
    assert uploads(sweep.root) == 2


def test_stall_threshold_follows_the_launch_estimate_unless_set() -> None:
    manifest = Manifest(launches=[])
    estimate = {"workers": [{"worker_id": 0, "parts": {"setup": 10.0, "model_load": 20.0}, "longest_batch_s": 120.0}]}
    manifest.launches.append(LaunchRecord("L1", 0.0, 4, estimate=estimate))
    assert stall_after_s(RecoveryConfig(), manifest, "L1", 0) == 4 * 150.0
    short = {"workers": [{"worker_id": 0, "parts": {"setup": 1.0}, "longest_batch_s": 2.0}]}
    manifest.launches.append(LaunchRecord("L2", 0.0, 4, estimate=short))
    assert stall_after_s(RecoveryConfig(), manifest, "L2", 0) == 300.0  # never under 5 minutes
    assert stall_after_s(RecoveryConfig(), manifest, "L1", 7) == 1200.0  # no estimate for that worker
    assert stall_after_s(RecoveryConfig(stall_after_minutes=2), manifest, "L1", 0) == 120.0


def test_two_launches_at_once_generate_each_clip_once(project: Path) -> None:
    script = project / "s.py"
    script.write_text(f"from musicsweep import run_sweep\nrun_sweep({clips(7)!r}, name='race')\n")
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    launches = [subprocess.Popen([sys.executable, str(script)], cwd=project, env=env) for _ in range(2)]
    assert [launch.wait(timeout=300) for launch in launches] == [0, 0]
    states = wait_for_sweep("race", timeout_s=400)
    assert set(states.values()) == {JobState.DONE}
    sweep = project / "runs" / "race"
    assert len(list((sweep / "audio").glob("*.wav"))) == 7
    assert uploads(sweep) == 7, "7 generations for 7 clips (14 before job-level claims)"
    started = (sweep / "logs" / "worker_0.log").read_text().count("] worker 0/1 on ")
    launched = [record.jobs for record in SweepDir(project / "runs", "race").read_manifest().launches]
    assert started == 1 and launched == [7, 0], "the second launch waits for the first and starts no worker"


def test_two_launches_planned_at_once_start_one_worker(project: Path, capsys) -> None:
    """Both plan before either writes the manifest (the race's worst case, forced): the launch lock
    makes the second one see the first one's jobs running and start nothing."""
    config = load_config()
    jobs = jobs_from_variants(clips(7), "both", config.max_duration_s)
    first, second = make_plan(jobs, config, "both"), make_plan(jobs, config, "both")
    assert len(first.to_run) == len(second.to_run) == 7
    assert len(launch(first, config).to_run) == 7
    assert launch(second, config).to_run == []
    assert "another launch of sweep both started 7 of these job(s) meanwhile; launching 0" in capsys.readouterr().out
    states = wait_for_sweep("both", timeout_s=300)
    assert set(states.values()) == {JobState.DONE}
    sweep = project / "runs" / "both"
    assert uploads(sweep) == 7
    assert (sweep / "logs" / "worker_0.log").read_text().count("] worker 0/1 on ") == 1


def test_status_and_dry_run_change_nothing(project: Path) -> None:
    run_sweep(clips(1), name="still")
    assert pull("still", interval_s=0.5, orphan_grace_s=0) == 0
    root = project / "runs"

    def snapshot() -> dict[str, tuple[int, bytes]]:
        return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}

    before = snapshot()
    assert musicsweep_main(["status", "still"]) == 0
    run_sweep(clips(1), name="still", dry_run=True)
    assert snapshot() == before
