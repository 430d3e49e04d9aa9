"""The environment contract between a launcher and its workers: the one place that writes and reads it.

A worker learns everything from `MUSICSWEEP_*` variables. `LaunchEnv` is what every worker of one
launch shares (store, launch, restart flag, engine settings, lease, sweep, launcher version);
`WorkerEnv` adds one worker's own (work folder, worker id, worker count, rate). Both are frozen
records with `to_env` and `from_env`, so a launcher, a generated script's exports and a worker
cannot disagree on a name or a format. The names on the wire never change: generated scripts and
hand-written test environments use them. Credentials are never part of it: each host uses its
own chain.

Test-only switches (read where they act, never written by a launcher) are named here too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from musicsweep.config import DEFAULT_OUTAGE_BUDGET_S, Config, EngineConfig, RecoveryConfig, StoreConfig
from musicsweep.errors import MusicsweepError
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
SWEEP = "MUSICSWEEP_SWEEP"
VERSION = "MUSICSWEEP_VERSION"
SPECS_SHA256 = "MUSICSWEEP_SPECS_SHA256"
TAKE_FROM_OTHERS = "MUSICSWEEP_TAKE_FROM_OTHERS"
HOST_DISK_STORE = "MUSICSWEEP_HOST_DISK_STORE"
# The worker's log file, exported by its script (`scripts.py`), which chose it: the worker uploads it.
LOG_FILE = "MUSICSWEEP_LOG"
HOST = "MUSICSWEEP_HOST"  # the worker's host in claims and records (Ray: HOSTNAME@ray-NODE); default its hostname
ATTEMPT = "MUSICSWEEP_ATTEMPT"  # a restart's number within its launch (Ray); 0 or absent: the first run

# Test-only switches: drills and tests set them, a launcher never does.
TEST_KILL_AT = "MUSICSWEEP_TEST_KILL_AT"
TEST_KILL_AFTER_UPLOAD = "MUSICSWEEP_TEST_KILL_AFTER_UPLOAD"  # older spelling of KILL_AT=upload
TEST_HANG_AT = "MUSICSWEEP_TEST_HANG_AT"
TEST_HEARTBEAT_S = "MUSICSWEEP_HEARTBEAT_S"
# SIGKILL the launcher: `submit` just before backend.submit, `submitted` just after it returned
TEST_LAUNCHER_KILL_AT = "MUSICSWEEP_TEST_LAUNCHER_KILL_AT"

DEFAULT_LEASE_S: float = RecoveryConfig.lease_s
T = TypeVar("T")


def _parsed(environ: Mapping[str, str], name: str, parse: Callable[[str], T], default: T | None = None) -> T:
    """`environ[name]` through `parse`; `default` when unset or empty (None: required). One-line error."""
    text = environ.get(name) or ""
    if not text:
        if default is None:
            raise MusicsweepError(f"{name} is not set: the launcher writes it into every worker's environment")
        return default
    try:
        return parse(text)
    except (ValueError, TypeError) as error:
        raise MusicsweepError(f"{name}={text!r}: {' '.join(str(error).split())}") from None


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return text == "1"


def _json_object(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def _sha256(text: str) -> str:
    if len(text) != 64 or text.strip("0123456789abcdef"):
        raise ValueError("expected 64 lowercase hex digits (a SHA-256)")
    return text


def store_config_to_env(config: StoreConfig) -> dict[str, str]:
    """The store settings a worker needs (never credentials: those come from the host's own chain)."""
    options: dict = {k: v for k, v in (("endpoint_url", config.endpoint_url), ("region", config.region)) if v}
    if config.profile:
        options["profile"] = config.profile
    if config.outage_budget_s != DEFAULT_OUTAGE_BUDGET_S:
        options["outage_budget_s"] = config.outage_budget_s
    return {STORE: config.url, STORE_OPTIONS: json.dumps(options, sort_keys=True)}


@dataclass(frozen=True)
class LaunchEnv:
    """What every worker of one launch shares."""

    store: StoreConfig
    launch_id: str = "manual"
    is_restart: bool = False
    engine: EngineConfig = field(default_factory=EngineConfig)
    lease_s: float = DEFAULT_LEASE_S
    sweep: str = ""  # only where a script needs it before any spec is read (EC2's agent)
    version: str = ""  # the launcher's musicsweep version; empty when absent
    specs_sha256: str = ""  # of the launch's spec list (`digests`); empty for a worker started by hand
    take_from_others: bool = True  # worker.take_from_others: take free clips of other shards (worker/pool.py)
    host_disk_store: bool = False  # the store is a folder on the worker's host (SSH host or SLURM cluster disk)

    def to_env(self) -> dict[str, str]:
        env = store_config_to_env(self.store) | {
            IS_RESTART: "1" if self.is_restart else "0",
            LAUNCH_ID: self.launch_id,
            ENGINE: json.dumps(asdict(self.engine), sort_keys=True),
            LEASE_S: repr(float(self.lease_s)),
            TAKE_FROM_OTHERS: "1" if self.take_from_others else "0",
            HOST_DISK_STORE: "1" if self.host_disk_store else "0",
        }
        optional = ((SWEEP, self.sweep), (VERSION, self.version), (SPECS_SHA256, self.specs_sha256))
        return env | {name: value for name, value in optional if value}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LaunchEnv:
        """Only the store is required; the rest default as for a worker started by hand."""
        url = _parsed(environ, STORE, str)
        store = _parsed(environ, STORE_OPTIONS, lambda text: StoreConfig(url, **_json_object(text)), StoreConfig(url))
        return cls(
            store=store,
            launch_id=environ.get(LAUNCH_ID) or "manual",
            is_restart=_parsed(environ, IS_RESTART, _flag, False),
            engine=_parsed(environ, ENGINE, lambda text: EngineConfig(**_json_object(text)), EngineConfig()),
            lease_s=_parsed(environ, LEASE_S, float, DEFAULT_LEASE_S),
            sweep=environ.get(SWEEP, ""),
            version=environ.get(VERSION, ""),
            specs_sha256=_parsed(environ, SPECS_SHA256, _sha256, ""),
            take_from_others=_parsed(environ, TAKE_FROM_OTHERS, _flag, True),
            host_disk_store=_parsed(environ, HOST_DISK_STORE, _flag, False),
        )


@dataclass(frozen=True)
class WorkerEnv:
    """One worker's whole environment: its launch's shared part and its own."""

    launch: LaunchEnv
    job_dir: str
    worker_id: int = 0
    num_workers: int = 1
    hourly_cost_usd: float = 0.0
    host: str = ""  # empty: the worker's hostname
    attempt: int = 0

    def to_env(self) -> dict[str, str]:
        env = self.launch.to_env() | {
            JOB_DIR: self.job_dir,
            WORKER_ID: str(self.worker_id),
            NUM_WORKERS: str(self.num_workers),
            HOURLY_COST_USD: repr(float(self.hourly_cost_usd)),
            "PYTHONUNBUFFERED": "1",
        }
        optional = ((HOST, self.host), (ATTEMPT, str(self.attempt) if self.attempt else ""))
        return env | {name: value for name, value in optional if value}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerEnv:
        """The work folder and the store are required; raises a one-line MusicsweepError naming the variable."""
        return cls(
            launch=LaunchEnv.from_env(environ),
            job_dir=_parsed(environ, JOB_DIR, str),
            worker_id=_parsed(environ, WORKER_ID, int, 0),
            num_workers=_parsed(environ, NUM_WORKERS, int, 1),
            hourly_cost_usd=_parsed(environ, HOURLY_COST_USD, float, 0.0),
            host=environ.get(HOST, ""),
            attempt=_parsed(environ, ATTEMPT, int, 0),
        )


def sweep_environment(config: Config, launch_id: str, is_restart: bool, specs_sha256: str = "") -> dict[str, str]:
    """What every worker of one launch shares, as the variables a backend carries to its hosts."""
    launch = LaunchEnv(
        config.store,
        launch_id,
        is_restart,
        config.engine,
        float(config.recovery.lease_s),
        version=version(),
        specs_sha256=specs_sha256,
        take_from_others=config.worker.take_from_others,
    )
    return launch.to_env()


def worker_environment(
    sweep_env: Mapping[str, str],
    job_dir: str,
    worker_id: int,
    num_workers: int,
    hourly_cost_usd: float,
    host_disk_store: str | None = None,
    host: str = "",
    attempt: int = 0,
) -> dict[str, str]:
    """One worker's environment; `host_disk_store` replaces the store by a folder on the host's own disk,
    where the launcher's shard lists are not and other hosts' claims may not be, so the worker takes
    only clips its host's workers were started with (`worker/pool.py`)."""
    launch = LaunchEnv.from_env(sweep_env)
    if host_disk_store is not None:
        launch = dataclasses.replace(launch, store=StoreConfig(url=host_disk_store), host_disk_store=True)
    return WorkerEnv(launch, job_dir, worker_id, num_workers, hourly_cost_usd, host, attempt).to_env()
