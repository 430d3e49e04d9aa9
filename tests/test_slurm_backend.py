"""The SLURM backend against a real single-node SLURM (tests/fixtures/slurm.py) and the tiny model."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from signal import SIGKILL

import pytest

from musicsweep import MusicsweepError, run_sweep
from musicsweep.backends import get_backend
from musicsweep.backends.slurm.settings import time_limit_s
from musicsweep.backends.slurm.state import SlurmArrays
from musicsweep.cli.pull import pull
from musicsweep.config import load_config
from musicsweep.layout import SweepDir
from musicsweep.remote.ssh import CONNECTIONS
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.sweep.lock import held_elsewhere
from musicsweep.sweep.plan import jobs_from_variants, running_jobs
from musicsweep.worker.context import EXIT_STOPPED, EXIT_STORE_UNREACHABLE
from tests.fixtures.s3 import RestartableS3rver
from tests.fixtures.servers import wait_until
from tests.fixtures.slurm import SlurmCluster
from tests.fixtures.sshd import SSHServer
from tests.helpers import (
    assert_intact,
    clips,
    exit_statuses,
    latest_log,
    run_sweep_script,
    sweep_dir,
    wait_for_sweep,
    wav_info,
    window_lines,
    write_slurm_config,
)

SECRET = "tok-9f2c61d4e0b7a35c"


def variants(prompts: list[str], durations: list[float]) -> list[dict]:
    """Every prompt at every duration, on the tiny model."""
    pairs = [(prompt, duration) for prompt in prompts for duration in durations]
    return [
        {"prompt": prompt, "duration_s": duration, "model": "tiny", "seed": index}
        for index, (prompt, duration) in enumerate(pairs)
    ]


def array_task(sweep: SweepDir, task: int = 0) -> str:
    arrays = sweep.read_manifest().backend_state[SlurmArrays.KEY]
    (array,) = arrays.values()
    return f"{array['array_job_id']}_{task}"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(cmdline)
    return found


@pytest.fixture(autouse=True)
def empty_queue(slurm_cluster: SlurmCluster):
    """Every test starts and ends with an idle node."""
    slurm_cluster.cancel_all()
    yield
    slurm_cluster.cancel_all()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 5400), ("2:30", 150), ("1:00:00", 3600), ("2-0", 172800), ("1-2:03", 93780), ("0-0:0:5", 5)],
)
def test_time_limit_formats(text: str, seconds: int) -> None:
    assert time_limit_s(text) == seconds


def test_unlimited_and_unreadable_time_limits() -> None:
    assert time_limit_s("UNLIMITED") == time_limit_s("infinite") == float("inf")
    assert time_limit_s("1:2:3:4") is None and time_limit_s("ten minutes") is None


def test_sweep_runs_as_one_throttled_array(project: Path, slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    write_slurm_config(project, shards=3)
    clips = variants(["warm lofi piano", "bright synth arp", "slow ambient pad", "dusty breakbeat"], [2])
    plan = run_sweep(clips + variants(["tense strings", "glassy bells"], [3]), "arr")
    sweep = plan.sweep
    assert [len(shard.jobs) for shard in plan.shards] == [2, 2, 2]
    # Clips of one duration batch together: a shard never mixes durations here.
    assert all(len({job.duration_s for job in shard.jobs}) == 1 for shard in plan.shards)

    array_id = array_task(sweep).split("_")[0]
    job = slurm_cluster.run("scontrol", "show", "job", array_id).stdout
    assert "ArrayTaskThrottle=2" in job and "Requeue=1" in job and "Comment=musicsweep-test" in job

    # Status is one squeue call for the whole array (a spy on PATH in front of the real squeue).
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir()
    calls = tmp_path / "squeue-calls"
    (spy_dir / "squeue").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec /usr/bin/squeue "$@"\n')
    (spy_dir / "squeue").chmod(0o755)
    backend = get_backend("slurm", load_config())
    original_path = os.environ["PATH"]
    os.environ["PATH"] = f"{spy_dir}:{original_path}"
    try:
        backend.poll(sweep, sweep.read_manifest())
    finally:
        os.environ["PATH"] = original_path
    assert len(calls.read_text().splitlines()) == 1
    assert sorted(backend.task_states(sweep.read_manifest())) == [f"{array_id}_{task}" for task in range(3)]

    states = wait_for_sweep("arr", timeout_s=400)
    assert set(states.values()) == {JobState.DONE} and len(states) == 6
    wavs = sorted((sweep.root / "audio").glob("*.wav"))
    assert len(wavs) == 6
    assert sorted(round(wav_info(path)[2] / wav_info(path)[0]) for path in wavs) == [2, 2, 2, 2, 3, 3]
    with open(sweep.cost_report) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {row["hourly_cost_usd"] for row in rows} == {"1.5"}
    # Tasks 0 and 1 may take task 2's clips (dynamic assignment), so the sweep can be done before the
    # throttle lets task 2 start; it still runs, finds nothing left, and logs.
    paths = [latest_log(sweep, task) for task in range(3)]
    wait_until(lambda: all(p.exists() and "worker finished with status" in p.read_text() for p in paths), 300, "3 logs")
    assert all("prepared: yes" in path.read_text() for path in paths)
    scripts = list((sweep.root / "scripts").glob("slurm-*/*.sh"))
    assert len(scripts) == 4 and all(path.stat().st_mode & 0o777 == 0o700 for path in scripts)


def test_preempted_task_is_requeued_and_completes_without_duplicates(
    project: Path, slurm_cluster: SlurmCluster
) -> None:
    write_slurm_config(project, engine_batch_size=1, shards=1)
    plan = run_sweep(variants(["rainy jazz trio", "driving techno"], [4, 5]), "pre")
    sweep = plan.sweep
    task = array_task(sweep)
    markers = sweep.root / "markers"
    wait_until(lambda: any(markers.glob("*.done")), 300, "the first finished clip")
    early = {path: path.stat().st_mtime_ns for path in (sweep.root / "audio").glob("*.wav")}
    signal = slurm_cluster.run("scancel", "--batch", "--signal=USR2", task)
    assert signal.returncode == 0, signal.stderr

    def requeued() -> bool:
        job = slurm_cluster.run("scontrol", "show", "job", task).stdout
        return "Restarts=1" in job and "JobState=PENDING" in job

    wait_until(requeued, 300, "the requeue")
    backend = get_backend("slurm", load_config())
    states = backend.poll(sweep, sweep.read_manifest())
    assert JobState.PENDING in states.values(), states  # the clips left wait in the queue with the task

    states = wait_for_sweep("pre", timeout_s=400)
    assert set(states.values()) == {JobState.DONE} and len(states) == 4
    log = latest_log(sweep).read_text()
    assert "requeueing" in log and "restart 1" in log
    # Nothing generated twice: one batch per clip in all, and the early WAVs were not rewritten.
    assert len(re.findall(r"batch of 1 x", log)) == 4
    assert "already in the store" in log
    for path, mtime in early.items():
        assert path.stat().st_mtime_ns == mtime
    assert len(list((sweep.root / "audio").glob("*.wav"))) == 4
    assert len(list((sweep.root / "costs").glob("*.json"))) == 4


def test_usr2_mid_clip_requeues_the_task_and_it_resumes_from_the_checkpoint(
    project: Path, slurm_cluster: SlurmCluster
) -> None:
    """SIGUSR2 during a 120 s clip: the worker stops at the next window boundary with its checkpoint,
    the task is requeued, and the restart generates only the windows left."""
    write_slurm_config(project, engine_batch_size=1, shards=1)
    plan = run_sweep(variants(["rainy jazz trio"], [120]), "usr2")
    sweep = plan.sweep
    log = latest_log(sweep)
    wait_until(lambda: log.exists() and "] window 2/6 " in log.read_text(), 300, "the second window")
    signal = slurm_cluster.run("scancel", "--batch", "--signal=USR2", array_task(sweep))
    assert signal.returncode == 0, signal.stderr

    states = wait_for_sweep("usr2", timeout_s=400)
    assert set(states.values()) == {JobState.DONE} and len(states) == 1
    text = log.read_text()
    assert "stopping after window " in text and "requeueing" in text and "restart 1" in text
    stopped = re.search(r"stopping after window (\d)/6", text)  # the window running when USR2 came, or the next
    assert stopped and f"resuming 1 clip(s) after window {stopped[1]}/6" in text
    assert window_lines(text) == [f"{i}/6" for i in range(1, 7)]  # one clip's windows, none generated twice
    (wav,) = (sweep.root / "audio").glob("*.wav")
    assert wav_info(wav) == (32000, 1, 120 * 32000)
    assert not list((sweep.root / "partial").glob("*"))


def test_task_whose_store_is_unreachable_is_requeued_and_finishes(
    project: Path, slurm_cluster: SlurmCluster, restartable_s3rver: RestartableS3rver
) -> None:
    """The store goes down mid-sweep: the worker gives up past its budget (exit 76, clips spooled),
    the task requeues itself like a preempted one, and once the store is back the restart finishes."""
    server = restartable_s3rver
    store = {"url": "s3://drill/musicsweep", "endpoint_url": server.endpoint_url, "region": "us-east-1"}
    write_slurm_config(project, engine_batch_size=1, store=store | {"outage_budget_s": 3}, shards=1)
    plan = run_sweep(variants(["rainy jazz trio", "driving techno"], [3, 4]), "gone")
    log = latest_log(plan.sweep)
    bucket = server.server.client()
    done = lambda: bucket.list_objects_v2(Bucket="drill", Prefix="musicsweep/gone/markers/").get("Contents", [])  # noqa: E731
    wait_until(lambda: any(item["Key"].endswith(".done") for item in done()), 300, "the first finished clip")
    server.stop()
    wait_until(lambda: "store unreachable: requeueing" in log.read_text(), 300, "the requeue on status 76")
    server.start()

    # Read the bucket, not a pull: an object torn by the server's own stop may still be listed.
    finished = lambda: {item["Key"].rsplit("/", 1)[1] for item in done() if item["Key"].endswith(".done")}  # noqa: E731
    wait_until(lambda: finished() == {f"{job.job_id}.done" for job in plan.jobs}, 400, "every clip after the requeue")
    wait_until(lambda: len(exit_statuses(log.read_text())) == 2, 120, "the requeued task's end")
    text = log.read_text()
    assert exit_statuses(text) == [EXIT_STORE_UNREACHABLE, 0] and "restart 1" in text
    generated = [line.rsplit(" ", 1)[1] for line in text.splitlines() if "] generated " in line]
    assert sorted(generated) == sorted(job.output_name for job in plan.jobs)  # each clip once


def test_cancel_leaves_no_process_behind(project: Path, slurm_cluster: SlurmCluster) -> None:
    write_slurm_config(project, engine_batch_size=1, shards=2)
    plan = run_sweep(variants(["calm harp", "noisy drums", "soft choir"], [5, 5.5]), "can")
    sweep = plan.sweep
    # Cancel mid-sweep, between batches: the worker stops at once (EXIT_STOPPED) and the epilogue
    # runs, which must not requeue a cancelled task.
    wait_until(lambda: any((sweep.root / "markers").glob("*.done")), 300, "the first finished clip")
    assert processes_mentioning(str(sweep.root))
    backend = get_backend("slurm", load_config())
    backend.cancel(sweep, sweep.read_manifest())
    assert processes_mentioning(str(sweep.root)) == []
    time.sleep(3)  # a wrongly requeued task would be back in the queue by now
    queue = backend.task_states(sweep.read_manifest())
    assert set(queue.values()) == {"CANCELLED"}, queue
    assert processes_mentioning(str(sweep.root)) == []


def test_a_cancelled_task_is_not_requeued_by_its_epilogue(
    project: Path, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    # Beside the real SLURM, a stand-in worker that stops at once on TERM/USR2 (EXIT_STOPPED), so
    # the epilogue surely runs after scancel, before KillWait's SIGKILL.
    stand_in = tmp_path / "stopping-worker"
    started = tmp_path / "started"
    stand_in.write_text(
        f"#!/bin/bash\ntrap 'sleep 1; exit {EXIT_STOPPED}' TERM USR2\ntouch {started}\nsleep 60 & wait $!\n"
    )
    stand_in.chmod(0o755)
    write_slurm_config(project, shards=1, python=str(stand_in))
    plan = run_sweep(variants(["never generated"], [2]), "stand-in")
    backend = get_backend("slurm", load_config())
    wait_until(started.exists, 120, "the stand-in worker")
    backend.cancel(plan.sweep, plan.sweep.read_manifest())
    log = latest_log(plan.sweep)
    wait_until(lambda: f"worker exited with status {EXIT_STOPPED}" in log.read_text(), 30, "the epilogue")
    time.sleep(2)  # a requeued task would be back in the queue by now
    assert set(backend.task_states(plan.sweep.read_manifest()).values()) == {"CANCELLED"}
    assert "not requeueing" in log.read_text()


def test_a_launcher_killed_after_sbatch_leaves_one_array_that_the_next_poll_finds(
    project: Path, slurm_cluster: SlurmCluster, monkeypatch
) -> None:
    """SIGKILL right after sbatch answered, before the array id reached the manifest: running the
    sweep script again finds the array by its job name (the launch id) and starts nothing. While
    squeue does not answer that lookup, nothing is started either (once, a loaded controller's
    silence let a re-run start a second array)."""
    write_slurm_config(project, shards=1)
    name = "slurm-killed"
    killed = run_sweep_script(project, name, "submitted")
    assert killed.returncode == -SIGKILL, killed.stdout + killed.stderr
    sweep = sweep_dir(name)
    manifest = sweep.read_manifest()
    (record,) = manifest.launches
    assert (record.jobs, record.submitted, manifest.backend_state) == (2, False, {})
    assert_an_unanswered_lookup_starts_nothing(project, sweep, name, monkeypatch)

    rerun = run_sweep_script(project, name)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "launched 0 job(s)" in rerun.stdout, rerun.stderr
    assert pull(name, interval_s=0.5, orphan_grace_s=0) == 0
    queue = slurm_cluster.run("squeue", "--noheader", "--states=all", "--format=%F %j").stdout.split("\n")
    arrays = {line for line in queue if f" musicsweep-{name}-" in line}
    assert [line.split()[1] for line in arrays] == [f"musicsweep-{name}-{record.id}"]
    text = sweep.worker(0, record.id).log.read_text()  # the array of the killed launch ran the clips
    assert text.count("] worker 0/1 on ") == 1
    assert_intact(open_store(load_config().store), jobs_from_variants(clips(2, 1).variants(), name), text)
    assert not held_elsewhere(sweep)


def assert_an_unanswered_lookup_starts_nothing(project: Path, sweep: SweepDir, name: str, monkeypatch) -> None:
    """squeue fails on the lookup by name: the unsubmitted launch's jobs are lost on an unreachable
    cluster (busy for a re-run, not relaunched), and cancel refuses rather than miss the array."""
    config = load_config()
    backend = get_backend("slurm", config)
    answer = backend.cluster.run

    def unanswered(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        if "--name" in command:
            return subprocess.CompletedProcess(command, 1, "", "slurm_load_jobs error: Socket timed out")
        return answer(command, stdin)

    monkeypatch.setattr(backend.cluster, "run", unanswered)
    manifest = sweep.read_manifest()
    assert set(backend.poll(sweep, manifest).values()) == {JobState.LOST}
    assert "squeue did not answer" in backend.unreachable_why[backend.host]
    assert running_jobs(backend, sweep, manifest, config) == set(manifest.jobs)
    with pytest.raises(MusicsweepError, match="cannot be found to cancel: run cancel again"):
        backend.cancel(sweep, manifest)


def test_task_that_dies_without_markers_fails_its_jobs(project: Path, slurm_cluster: SlurmCluster) -> None:
    write_slurm_config(project, shards=1, prepare=["test -d /nonexistent-musicsweep-module"])
    plan = run_sweep(variants(["never generated", "also never"], [2]), "dies")
    states = wait_for_sweep("dies", timeout_s=120)
    assert set(states.values()) == {JobState.FAILED} and len(states) == 2
    log = latest_log(plan.sweep).read_text()
    assert "prepare failed: test -d /nonexistent-musicsweep-module" in log
    assert not list((plan.sweep.root / "audio").glob("*.wav"))


@pytest.mark.parametrize(
    ("setting", "sbatch_says", "key"),
    [
        ({"partition": "nope"}, "invalid partition specified: nope", "backends.slurm.partition"),
        ({"time": "1:2:3:4"}, "Invalid --time specification", "backends.slurm.time"),
    ],
)
def test_bad_cluster_settings_fail_at_submit_with_sbatchs_message(
    project: Path, slurm_cluster: SlurmCluster, setting: dict, sbatch_says: str, key: str
) -> None:
    write_slurm_config(project, **setting)
    with pytest.raises(MusicsweepError) as error:
        run_sweep(variants(["never runs"], [2]), "bad")
    message = str(error.value)
    assert sbatch_says in message and key in message and "musicsweep.yaml" in message
    assert "\n" not in message
    assert not (project / "runs" / "bad").exists()
    assert slurm_cluster.run("squeue", "-h").stdout == ""


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"array_paralellism": 2}, "backends.slurm'.array_paralellism: unknown key"),
        ({"array_parallelism": 0}, "backends.slurm.array_parallelism': must be at least 1"),
        ({"cpus_per_task": "two"}, "cpus_per_task: expected int"),
        ({"time": "1:00"}, "backends.slurm.time': '1:00' is not longer than signal_lead_s"),
        ({"prepare": ["echo a\necho b"]}, "backends.slurm.prepare': one option or command per entry"),
    ],
)
def test_bad_config_fails_before_anything_is_written(
    project: Path, slurm_cluster: SlurmCluster, setting: dict, message: str
) -> None:
    write_slurm_config(project, **setting)
    with pytest.raises(MusicsweepError, match=re.escape(message)):
        run_sweep(variants(["never runs"], [2]), "bad")
    assert not (project / "runs" / "bad").exists()


def test_sweep_submitted_through_an_ssh_login_node(
    project: Path,
    slurm_cluster: SlurmCluster,
    sshd_factory: Callable[[str], SSHServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    login = sshd_factory("127.0.0.4")
    monkeypatch.setenv("MUSICSWEEP_TEST_TOKEN", SECRET)
    # The loopback "login node" is this machine: same SLURM_CONF (forwarded on ssh's stdin) and Python.
    entry = login.entry(python=sys.executable, env=["SLURM_CONF", "MUSICSWEEP_TEST_TOKEN"])
    show_token_hash = 'echo "token: $(printf %s "${MUSICSWEEP_TEST_TOKEN:-}" | sha256sum | cut -c1-16)"'
    write_slurm_config(project, shards=1, login=entry, prepare=[show_token_hash])
    plan = run_sweep(variants(["remote cello", "remote flute"], [2]), "via-login")
    sweep = plan.sweep
    remote_sweep = login.root / "remote" / "runs" / "via-login"
    assert (remote_sweep / "jobs").is_dir() and (remote_sweep / "scripts").is_dir()

    backend = get_backend("slurm", load_config())
    before = CONNECTIONS.total()
    backend.poll(sweep, sweep.read_manifest())
    assert CONNECTIONS.total() - before == 1  # squeue and the marker listing share one round trip

    states = wait_for_sweep("via-login", timeout_s=400)
    assert set(states.values()) == {JobState.DONE} and len(states) == 2
    assert len(list((remote_sweep / "audio").glob("*.wav"))) == 2
    assert len(list((sweep.root / "audio").glob("*.wav"))) == 2  # pulled back to the laptop
    (script,) = (sweep.root / "scripts").glob("slurm-*/worker_0.sh")
    assert f"MUSICSWEEP_JOB_DIR={remote_sweep}" in script.read_text()
    # The forwarded variable reached the task through ssh's stdin and sbatch, and no file holds it.
    token_hash = hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    assert f"token: {token_hash}" in latest_log(sweep).read_text()
    for folder in (project, login.root):
        leaks = [path for path in folder.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()]
        assert leaks == []


def test_bad_partition_through_the_login_node(
    project: Path, slurm_cluster: SlurmCluster, sshd_factory: Callable[[str], SSHServer]
) -> None:
    login = sshd_factory("127.0.0.4")
    write_slurm_config(project, partition="nope", login=login.entry(python=sys.executable, env=["SLURM_CONF"]))
    with pytest.raises(MusicsweepError, match="backends.slurm.partition': sbatch rejected the settings: sbatch: error"):
        run_sweep(variants(["never runs"], [2]), "bad")
    assert not (project / "runs" / "bad").exists()
