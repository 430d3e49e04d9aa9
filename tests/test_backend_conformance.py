"""The backend contract, one set of tests run against every registered backend with its real part.

local runs workers on this machine; ssh on two loopback sshd hosts; slurm on the real single-node
cluster; ec2 on moto (EC2 and S3), each instance's user data run in a sandbox here; runpod on the
GraphQL stand-in, whose pods are a loopback sshd, with results in S3 (moto). The worker is a
stand-in (tests/conformance/standin_worker.py) that keeps the real worker's side of the contract
(environment, `.pid` files, WAV, cost row and `.done` through the store) but writes 1 s of silence
when the test releases it, so the suite needs no model and runs in minutes.

Plugging in a new backend: register it in `musicsweep.backends.BACKENDS`, then add a harness
to tests/conformance/harness.py (a `BackendHarness` subclass in `HARNESSES`) that starts its
real part from a fixture, writes a musicsweep.yaml whose worker `python` is `self.python` (the
stand-in) with `workers` (2) workers, and says how the real world acts on it: `submit_held` (when
its work is submitted but not started, if it has such a phase), `lose_host`, `play_provider` and
`live_executors` (what still runs or bills). `test_every_backend_has_a_harness` fails until it
has one; the backend is done when every test here passes for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from musicsweep.backends import BACKEND_NAMES
from musicsweep.layout import COSTS_DIR, MARKERS_DIR
from musicsweep.states import FINISHED_STATES, JobState
from musicsweep.sweep.follow import poll_once
from musicsweep.sweep.plan import Plan
from musicsweep.sweep.trackers import OrphanTracker
from tests.conformance.harness import HARNESSES, BackendHarness
from tests.fixtures.servers import wait_until
from tests.tiers import ONE_PER_MACHINE

pytestmark = pytest.mark.e2e  # every harness starts stand-in worker processes

CLIPS = 4  # two workers of two clips each

P, R, D, O, F, L = (  # noqa: E741
    JobState.PENDING,
    JobState.RUNNING,
    JobState.DONE,
    JobState.DONE_ORPHANS,
    JobState.FAILED,
    JobState.LOST,
)


def backend(name: str) -> object:
    """A backend whose harness starts a one-per-machine server runs in that server's test process."""
    group = ONE_PER_MACHINE.get(HARNESSES[name].server or "")
    return pytest.param(name, marks=pytest.mark.xdist_group(group)) if group else name


@pytest.fixture(params=[backend(name) for name in BACKEND_NAMES])
def harness(request: pytest.FixtureRequest, project: Path, tmp_path: Path) -> Iterator[BackendHarness]:
    harness = HARNESSES[request.param](request, project, tmp_path)
    try:
        yield harness
    finally:
        harness.teardown()


def ids(plan: Plan) -> list[str]:
    return sorted(job.job_id for job in plan.jobs)


def each(plan: Plan, state: JobState) -> dict[str, JobState]:
    return dict.fromkeys(ids(plan), state)


def test_every_backend_has_a_harness() -> None:
    assert sorted(HARNESSES) == sorted(BACKEND_NAMES)


def test_submitted_work_is_pending_until_its_worker_starts(harness: BackendHarness) -> None:
    if harness.no_pending_phase:
        pytest.skip(harness.no_pending_phase)
    seen: list[dict[str, JobState]] = []
    plan = harness.launch("pending", CLIPS, seen.append)
    assert seen == [each(plan, P)]
    harness.started_workers(plan.sweep)
    assert harness.poll(plan.sweep) == each(plan, R)


def test_submit_then_running_done_then_fetch(harness: BackendHarness) -> None:
    plan = harness.launch("flow", CLIPS)
    records = harness.started_workers(plan.sweep)
    assert sorted(job for record in records for job in record["jobs"]) == ids(plan)
    assert harness.poll(plan.sweep) == each(plan, R)

    harness.release()
    states = harness.poll_until(plan.sweep, lambda s: set(s.values()) <= set(FINISHED_STATES))
    assert states == each(plan, D)
    harness.backend().fetch(plan.sweep, plan.sweep.read_manifest())
    sweep = plan.sweep
    assert sorted(p.name for p in sweep.audio.glob("*.wav")) == sorted(job.output_name for job in plan.jobs)
    assert sorted(p.stem for p in sweep.folder(COSTS_DIR).glob("*.json")) == ids(plan)
    assert sorted(p.name for p in sweep.folder(MARKERS_DIR).glob("*.done")) == [f"{j}.done" for j in ids(plan)]
    assert harness.wait_no_executor(sweep) == []


def test_a_killed_worker_fails_its_jobs_only(harness: BackendHarness) -> None:
    plan = harness.launch("killed", CLIPS)
    killed, alive = harness.started_workers(plan.sweep)
    harness.kill_worker(killed)
    expected = dict.fromkeys(killed["jobs"], F) | dict.fromkeys(alive["jobs"], R)
    assert harness.poll_until(plan.sweep, lambda s: all(s[j] != R for j in killed["jobs"])) == expected
    # Still failed once whatever ran the worker has ended too (a cloud machine terminates itself).
    wait_until(lambda: harness.machine_gone(killed), 30, "the killed worker's executor to end")
    assert harness.poll(plan.sweep) == expected


def test_a_host_that_goes_away_loses_its_jobs(harness: BackendHarness) -> None:
    if harness.no_lost_host:
        pytest.skip(harness.no_lost_host)
    plan = harness.launch("lost", CLIPS)
    _, far = harness.started_workers(plan.sweep)
    lost = harness.lose_host(far)
    assert harness.poll(plan.sweep) == dict.fromkeys(ids(plan), R) | dict.fromkeys(lost, L)


def test_orphan_workers_are_killed(harness: BackendHarness) -> None:
    plan = harness.launch("orphans", CLIPS)
    harness.started_workers(plan.sweep)
    harness.release(linger=True)
    states = harness.poll_until(plan.sweep, lambda s: R not in s.values())
    assert states == each(plan, O), "finished jobs whose worker lives on are done_orphans"
    assert harness.live_executors(plan.sweep) != []

    assert poll_once(plan.sweep, plan.sweep.read_manifest(), harness.backend(), OrphanTracker(0)) == each(plan, D)
    assert harness.wait_no_executor(plan.sweep) == []
    assert harness.poll(plan.sweep) == each(plan, D)


def test_cancel_leaves_no_process(harness: BackendHarness) -> None:
    plan = harness.launch("cancel", CLIPS)
    harness.started_workers(plan.sweep)
    assert harness.live_executors(plan.sweep) != []
    harness.backend().cancel(plan.sweep, plan.sweep.read_manifest())
    assert harness.wait_no_executor(plan.sweep) == []
