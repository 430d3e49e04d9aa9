"""Two EC2 instances of one launch, each running its user data in its own sandbox, with its own disk and
metadata service: a spot notice on one, and the relaunch policy (`sweep.takers`) with the other alive.
What the user pays for is counted: instances in moto, `generated` lines in the uploaded logs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from musicsweep import run_sweep
from musicsweep.cli.pull import main as auto_pull
from musicsweep.config import load_config
from musicsweep.contract import TEST_HANG_AT
from musicsweep.layout import SweepDir
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.sightings import Sightings
from musicsweep.sweep.observe import observe
from musicsweep.sweep.relaunch import judge, relaunch_jobs
from musicsweep.sweep.takers import live_takers
from tests.fixtures.ec2 import EC2Project, make_sandbox
from tests.fixtures.imds import IMDS
from tests.fixtures.servers import wait_until
from tests.helpers import assert_each_clip_once, ec2_variants, generated_hashes, taken_names, uploaded_log

EXIT_STOPPED = 75


def instance_of_worker(ec2_project: EC2Project, name: str, worker: int) -> str:
    """The instance that runs worker `worker` of the sweep's launch (its `musicsweep-worker` tag)."""
    for instance in ec2_project.backend().instances(name, ("pending", "running")):
        if {"Key": "musicsweep-worker", "Value": str(worker)} in instance.get("Tags", []):
            return instance["InstanceId"]
    raise AssertionError(f"no instance of worker {worker}")


def test_spot_notice_on_one_of_two_the_other_takes_its_clips_and_no_instance_is_started(
    ec2_project: EC2Project, second_imds: IMDS, tmp_path: Path
) -> None:
    """Instance A (worker 0) gets a spot notice as soon as its worker runs; instance B (worker 1), held
    still meanwhile so it cannot finish first, takes A's clips. While B is live the relaunch policy
    leaves A's failed clips to it: two instances in all, every clip generated once."""
    ec2_project.configure(instances=2)
    name = ec2_project.sweep_name()
    plan = run_sweep(ec2_variants(6, 1), name, yes=True)
    job_ids = {job.job_id for job in plan.jobs}
    backend = ec2_project.backend()
    a, b = instance_of_worker(ec2_project, name, 0), instance_of_worker(ec2_project, name, 1)
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name)
    store = open_store(config.store)
    shard_a = set(store.get_json(sweep.keys.shard(sweep.read_manifest().launches[-1].id, 0))["jobs"])
    sandbox_a, sandbox_b = make_sandbox(tmp_path / "bin-a"), make_sandbox(tmp_path / "bin-b")

    survivor = sandbox_b.start(backend, b, ec2_project.own_machine(backend, b, second_imds))
    wait_until(
        lambda: any(k.endswith(".heartbeat") for k in ec2_project.s3_keys(f"{name}/markers/worker_1.")),
        120,
        "B beating",
    )
    os.killpg(survivor.pid, signal.SIGSTOP)  # B makes nothing until A has stopped
    try:
        ec2_project.imds.interrupt()  # A's own metadata service: B's never announces one
        assert sandbox_a.run(backend, a, ec2_project.own_machine(backend, a)) == EXIT_STOPPED
    finally:
        os.killpg(survivor.pid, signal.SIGCONT)
    generated_a = generated_hashes(ec2_project, name, 0)

    lease_s = config.recovery.lease_s
    wait_until(lambda: [t.worker for t in live_takers(store, sweep, Sightings(), lease_s)] == [1], 120, "B live again")
    manifest = sweep.read_manifest()
    states = backend.poll(sweep, manifest)
    left = {job_id for job_id, state in states.items() if state == JobState.FAILED}
    assert left == {job_id for job_id in shard_a if job_id[:8] not in generated_a} and left
    verdict = judge(observe(sweep, manifest, backend, config), manifest, config, sweep, states, time.time() + 60)
    assert verdict.ready == [] and set(verdict.left) == left  # left to B, which is live and takes clips
    assert relaunch_jobs(config, sweep, backend, verdict.ready, manifest).started == []

    assert sandbox_b.finish(backend, b, survivor) == 0
    assert auto_pull([name, "--relaunch-failed"]) == 0  # follows to the end: nothing is left to relaunch
    assert len(ec2_project.instance_ids(name)) == 2
    generated_b = generated_hashes(ec2_project, name, 1)
    taken = {
        output.rsplit("_", 1)[-1].removesuffix(".wav") for output in taken_names(uploaded_log(ec2_project, name, 1))
    }
    assert taken == {job_id[:8] for job_id in left}  # B took exactly the clips A left, and made them
    assert_each_clip_once(ec2_project, name, job_ids, generated_a + generated_b)
    assert [entry.jobs for entry in sweep.read_manifest().launches] == [6]


def test_the_survivor_has_exited_so_relaunch_starts_one_instance_for_what_the_notice_left(
    ec2_project: EC2Project, second_imds: IMDS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long clip's instance A claims it (once its model is loaded) and holds it mid-batch (a drill
    hang after window 1, its heartbeat beating), so B makes its own clip and exits: nothing free is
    left for it. A's spot notice then stops A at that window, its claim handed back; with no live
    worker left, `--relaunch-failed` starts exactly one instance, which resumes the clip. Three
    instances, every clip generated once."""
    ec2_project.configure(instances=2)
    name = ec2_project.sweep_name()
    long, short = {**ec2_variants(1, 32)[0], "seed": 1}, ec2_variants(1, 1)[0]  # 32 s: two windows
    plan = run_sweep([long, short], name, yes=True)
    job_ids = {job.job_id for job in plan.jobs}
    long_id = next(job.job_id for job in plan.jobs if job.duration_s == 32)
    backend = ec2_project.backend()
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name)
    store = open_store(config.store)
    launch = sweep.read_manifest().launches[-1].id
    worker_a = next(w for w in (0, 1) if long_id in store.get_json(sweep.keys.shard(launch, w))["jobs"])
    a, b = instance_of_worker(ec2_project, name, worker_a), instance_of_worker(ec2_project, name, 1 - worker_a)

    monkeypatch.setenv(TEST_HANG_AT, "window1")  # A only: B and the relaunch run normally
    sandbox_a = make_sandbox(tmp_path / "bin-a")
    holder = sandbox_a.start(backend, a, ec2_project.own_machine(backend, a))
    monkeypatch.delenv(TEST_HANG_AT)
    wait_until(lambda: ec2_project.s3_keys(f"{name}/claims/{long_id}/"), 240, "A holding its clip")
    assert make_sandbox(tmp_path / "bin-b").run(backend, b, ec2_project.own_machine(backend, b, second_imds)) == 0
    held = "nothing left to take: 1 clip(s) of the sweep held by live workers"
    assert held in uploaded_log(ec2_project, name, 1 - worker_a)
    wait_until(lambda: ec2_project.s3_keys(f"{name}/partial/"), 240, "A past window 1")
    generated_b = generated_hashes(ec2_project, name, 1 - worker_a)
    assert generated_b == [j[:8] for j in job_ids - {long_id}]

    ec2_project.imds.interrupt()
    assert sandbox_a.finish(backend, a, holder) == EXIT_STOPPED
    assert generated_hashes(ec2_project, name, worker_a) == []
    ec2_project.imds.notice = None  # the new instance gets no notice

    manifest = sweep.read_manifest()
    states = backend.poll(sweep, manifest)
    assert {job_id for job_id, state in states.items() if state == JobState.FAILED} == {long_id}
    verdict = judge(observe(sweep, manifest, backend, config), manifest, config, sweep, states, time.time() + 60)
    assert verdict.ready == [long_id] and verdict.left == {}  # no live worker is left to take it
    assert relaunch_jobs(config, sweep, backend, verdict.ready, manifest).started == [long_id]
    assert len(ec2_project.instance_ids(name)) == 3
    (new,) = [i["InstanceId"] for i in backend.instances(name, ("pending", "running")) if i["InstanceId"] not in (a, b)]
    sandbox = make_sandbox(tmp_path / "bin-c")
    assert sandbox.run(backend, new, ec2_project.own_machine(backend, new, second_imds)) == 0
    generated_new = generated_hashes(ec2_project, name, 0)  # the new instance is worker 0 of its launch
    assert generated_new == [long_id[:8]]
    assert_each_clip_once(ec2_project, name, job_ids, generated_b + generated_new)
    assert [entry.jobs for entry in sweep.read_manifest().launches] == [2, 1]
    assert set(backend.poll(sweep, sweep.read_manifest()).values()) == {JobState.DONE}
