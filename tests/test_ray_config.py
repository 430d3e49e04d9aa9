"""The Ray backend before any cluster is involved: settings, bad input, states and records."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from musicsweep.backends import get_backend
from musicsweep.backends.ray.backend import actor_executor
from musicsweep.backends.ray.host import LaunchPlan
from musicsweep.backends.ray.state import RayJob, RayJobs
from musicsweep.config import load_config
from musicsweep.doctor.backends import ray_checks
from musicsweep.doctor.result import FAIL, SKIP
from musicsweep.errors import MusicsweepError
from musicsweep.states import JobState
from tests.fixtures.servers import free_port


def write(project: Path, **ray: object) -> None:
    (project / "musicsweep.yaml").write_text(yaml.safe_dump({"backend": "ray", "backends": {"ray": ray}}))


@pytest.mark.parametrize(
    ("settings", "key", "why"),
    [
        ({"address": "127.0.0.1:8265"}, "backends.ray.address", "http(s)://"),
        ({"num_gpus": -1}, "backends.ray.num_gpus", "at least 0"),
        ({"resources": {"a100": -2}}, "backends.ray.resources.a100", "non-negative"),
        ({"num_gpus": 0, "num_cpus": 0}, "backends.ray.num_cpus", "some resource"),
        ({"prepare": ["a\nb"]}, "backends.ray.prepare", "without newlines"),
        ({"nodes": 3}, "backends.ray.nodes", "unknown key"),
    ],
)
def test_bad_settings_fail_naming_the_key(project: Path, settings: dict, key: str, why: str) -> None:
    write(project, **settings)
    with pytest.raises(MusicsweepError) as error:
        get_backend("ray", load_config())
    message = str(error.value)
    assert "backends.ray" in message and key.rsplit(".", 1)[1] in message and why in message and "\n" not in message


def test_an_unreachable_address_fails_before_anything_is_submitted(project: Path) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    write(project, address=address)
    backend = get_backend("ray", load_config())
    with pytest.raises(MusicsweepError) as error:
        backend.validate()
    message = str(error.value)
    assert "backends.ray.address" in message and f"{address} does not answer" in message and "\n" not in message
    rows = ray_checks(load_config(), fix=False)
    assert [(row.name, row.status) for row in rows] == [
        ("ray address", FAIL),
        ("ray version", SKIP),
        ("ray resources", SKIP),
        ("ray store", SKIP),
    ]


@pytest.mark.parametrize(
    ("actor", "job", "state", "alive"),
    [
        ("ALIVE", "RUNNING", JobState.RUNNING, True),
        ("PENDING_CREATION", "RUNNING", JobState.PENDING, False),  # waiting for resources
        ("RESTARTING", "RUNNING", JobState.PENDING, False),  # its node was lost: Ray restarts it
        ("DEAD", "RUNNING", JobState.FAILED, False),  # the markers say done where it was
        (None, "PENDING", JobState.PENDING, False),  # the driver has not started it yet
        (None, "FAILED", JobState.FAILED, False),  # the driver failed before starting it
        (None, None, JobState.FAILED, False),  # a job the cluster no longer knows
    ],
)
def test_a_worker_s_state_from_its_actor_and_job(actor, job, state: JobState, alive: bool) -> None:
    executor = actor_executor(actor, job)
    assert (executor.state, executor.alive) == (state, alive)


def test_records_read_back() -> None:
    jobs = RayJobs({"L1": RayJob("musicsweep-s-L1", "musicsweep-s", {"0": ["a", "b"], "1": ["c"]})})
    assert RayJobs.from_json(jobs.to_json()) == jobs
    plan = LaunchPlan("s", "L1", "musicsweep-s", {0: 0.5, 1: 0.5}, "python", 1.0, 2.0, {"a100": 1.0}, 3, ["true"], 5.0)
    assert LaunchPlan.decode(plan.encode()) == plan
