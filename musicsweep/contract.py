"""The environment contract between a launcher and its workers, written here and read by the worker.

A worker learns everything from `MUSICSWEEP_*` variables: the sweep-wide values (store, launch,
restart flag, engine settings) from `sweep_environment`, and its own (work folder, worker id,
rate) from `worker_environment`. Credentials are never part of it: each host uses its own chain.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from musicsweep.config import Config, EngineConfig
from musicsweep.store import store_config_to_env
from musicsweep.version import version

JOB_DIR = "MUSICSWEEP_JOB_DIR"
WORKER_ID = "MUSICSWEEP_WORKER_ID"
NUM_WORKERS = "MUSICSWEEP_NUM_WORKERS"
HOURLY_COST_USD = "MUSICSWEEP_HOURLY_COST_USD"
IS_RESTART = "MUSICSWEEP_IS_RESTART"
LAUNCH_ID = "MUSICSWEEP_LAUNCH_ID"
ENGINE = "MUSICSWEEP_ENGINE"
STORE, STORE_OPTIONS = "MUSICSWEEP_STORE", "MUSICSWEEP_STORE_OPTIONS"
LEASE_S = "MUSICSWEEP_LEASE_S"
VERSION = "MUSICSWEEP_VERSION"  # the launcher's musicsweep version: a worker of another refuses to run


def engine_json(engine: EngineConfig) -> str:
    return json.dumps(asdict(engine), sort_keys=True)


def sweep_environment(config: Config, launch_id: str, is_restart: bool) -> dict[str, str]:
    """What every worker of one launch shares."""
    return store_config_to_env(config.store) | {
        IS_RESTART: "1" if is_restart else "0",
        LAUNCH_ID: launch_id,
        ENGINE: engine_json(config.engine),
        LEASE_S: repr(float(config.recovery.lease_s)),
        VERSION: version(),
    }


def worker_environment(
    sweep_env: dict[str, str],
    job_dir: str,
    worker_id: int,
    num_workers: int,
    hourly_cost_usd: float,
    host_disk_store: str | None = None,
) -> dict[str, str]:
    """One worker's environment; `host_disk_store` replaces the store by a folder on the host's own disk."""
    env = dict(sweep_env)
    if host_disk_store is not None:
        env |= {STORE: host_disk_store, STORE_OPTIONS: "{}"}
    return env | {
        JOB_DIR: job_dir,
        WORKER_ID: str(worker_id),
        NUM_WORKERS: str(num_workers),
        HOURLY_COST_USD: repr(float(hourly_cost_usd)),
        "PYTHONUNBUFFERED": "1",
    }
