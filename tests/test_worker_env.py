"""The worker's environment contract (`contract.py`): one record written by launchers, read by workers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from musicsweep import contract
from musicsweep.config import Config, EngineConfig, RecoveryConfig, StoreConfig
from musicsweep.contract import LaunchEnv, WorkerEnv, sweep_environment, worker_environment
from musicsweep.errors import MusicsweepError

S3_STORE = StoreConfig("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9", region="eu-west-1", outage_budget_s=5)


def full_env() -> WorkerEnv:
    launch = LaunchEnv(S3_STORE, "L7", True, EngineConfig(batch_size=3, device="cpu"), 42.5, "gpu-sweep", "1.2.3")
    return WorkerEnv(launch, "/work/gpu-sweep", worker_id=2, num_workers=4, hourly_cost_usd=0.75)


def test_every_field_survives_the_round_trip_under_the_names_on_the_wire() -> None:
    env = full_env()
    written = env.to_env()
    assert WorkerEnv.from_env(written) == env
    assert written[contract.JOB_DIR] == "/work/gpu-sweep" and written[contract.WORKER_ID] == "2"
    assert written[contract.LAUNCH_ID] == "L7" and written[contract.IS_RESTART] == "1"
    assert written[contract.SWEEP] == "gpu-sweep" and written[contract.VERSION] == "1.2.3"
    assert written[contract.STORE] == "s3://bucket/prefix" and written[contract.LEASE_S] == "42.5"
    assert all(name.startswith("MUSICSWEEP_") or name == "PYTHONUNBUFFERED" for name in written)


def test_optional_values_are_left_out_and_defaulted_when_absent() -> None:
    written = WorkerEnv(LaunchEnv(StoreConfig("/runs")), "/work").to_env()
    assert contract.SWEEP not in written and contract.VERSION not in written
    env = WorkerEnv.from_env({contract.STORE: "/runs", contract.JOB_DIR: "/work"})
    assert env.launch.version == "" and env.launch.sweep == "" and env.launch.launch_id == "manual"
    assert env.launch.lease_s == RecoveryConfig().lease_s and env.worker_id == 0 and env.num_workers == 1
    assert env.launch.engine == EngineConfig() and not env.launch.is_restart


def test_the_launcher_helpers_write_the_record() -> None:
    config = Config(store=S3_STORE, engine=EngineConfig(batch_size=2))
    shared = sweep_environment(config, "L1", is_restart=False)
    worker = WorkerEnv.from_env(worker_environment(shared, "/w", 1, 2, 0.5, host_disk_store="/scratch/runs"))
    assert worker.launch.store == StoreConfig("/scratch/runs"), "the host's own disk replaces the store, options too"
    assert worker.launch.engine == EngineConfig(batch_size=2) and worker.launch.launch_id == "L1"
    assert (worker.job_dir, worker.worker_id, worker.num_workers, worker.hourly_cost_usd) == ("/w", 1, 2, 0.5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (contract.WORKER_ID, "two", "MUSICSWEEP_WORKER_ID='two': invalid literal for int()"),
        (contract.HOURLY_COST_USD, "cheap", "MUSICSWEEP_HOURLY_COST_USD='cheap': could not convert"),
        (contract.IS_RESTART, "yes", "MUSICSWEEP_IS_RESTART='yes': expected 0 or 1"),
        (contract.ENGINE, "{batch_size: 2", "MUSICSWEEP_ENGINE='{batch_size: 2': Expecting property name"),
        (contract.ENGINE, '{"batch": 2}', "MUSICSWEEP_ENGINE='{\"batch\": 2}': "),
        (contract.STORE_OPTIONS, "[]", "MUSICSWEEP_STORE_OPTIONS='[]': expected a JSON object"),
        (contract.STORE_OPTIONS, '{"bucket": "x"}', "MUSICSWEEP_STORE_OPTIONS="),
        (contract.LEASE_S, "soon", "MUSICSWEEP_LEASE_S='soon': could not convert"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str, message: str) -> None:
    environ = full_env().to_env() | {name: value}
    with pytest.raises(MusicsweepError) as raised:
        WorkerEnv.from_env(environ)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize("name", [contract.JOB_DIR, contract.STORE])
def test_a_missing_required_value_names_the_variable(name: str) -> None:
    environ = {key: value for key, value in full_env().to_env().items() if key != name}
    with pytest.raises(MusicsweepError, match=f"^{name} is not set"):
        WorkerEnv.from_env(environ)


@pytest.mark.e2e
def test_a_worker_with_a_bad_environment_says_one_line_and_exits_2(tmp_path) -> None:
    environ = {"PATH": "/usr/bin:/bin", contract.STORE: str(tmp_path), contract.JOB_DIR: str(tmp_path)}
    environ[contract.WORKER_ID] = "two"
    result = subprocess.run(
        [sys.executable, "-m", "musicsweep.worker", str(tmp_path / "spec.pkl")],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "" and result.stdout.count("\n") == 1
    assert "] error: MUSICSWEEP_WORKER_ID='two': invalid literal for int()" in result.stdout
