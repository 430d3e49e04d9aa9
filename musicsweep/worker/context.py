"""What a worker knows about itself: the environment contract, read once, and its stop flag."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from musicsweep.config import EngineConfig
from musicsweep.contract import DEFAULT_LEASE_S, WorkerEnv
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.retry import RetryingStore
from musicsweep.worker.log import log

EXIT_BAD_ENVIRONMENT = 2  # a MUSICSWEEP_* value missing or malformed: nothing was started
EXIT_STOPPED = 75
EXIT_STORE_UNREACHABLE = 76


@dataclass
class WorkerContext:
    """The environment contract (`contract.WorkerEnv`), read once, with its store opened."""

    work_dir: Path
    store: Store
    worker_id: int
    num_workers: int
    hourly_cost_usd: float
    is_restart: bool
    launch_id: str
    engine_config: EngineConfig
    lease_s: float = DEFAULT_LEASE_S
    take_from_others: bool = True
    host_disk_store: bool = False
    host: str = field(default_factory=socket.gethostname)
    attempt: int = 0  # a restart's number within its launch: its log and lifetime record are its own

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerContext:
        return cls.of(WorkerEnv.from_env(environ))

    @classmethod
    def of(cls, env: WorkerEnv) -> WorkerContext:
        launch = env.launch
        return cls(
            work_dir=Path(env.job_dir),
            store=RetryingStore(open_store(launch.store), launch.store.outage_budget_s, log),
            worker_id=env.worker_id,
            num_workers=env.num_workers,
            hourly_cost_usd=env.hourly_cost_usd,
            is_restart=launch.is_restart,
            launch_id=launch.launch_id,
            engine_config=launch.engine,
            lease_s=launch.lease_s,
            take_from_others=launch.take_from_others,
            host_disk_store=launch.host_disk_store,
            host=env.host or socket.gethostname(),
            attempt=env.attempt,
        )


class StopFlag:
    """Set by SIGUSR2/SIGTERM; checked between batches and at each long batch's window boundaries."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for signum in (signal.SIGUSR2, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        log(f"received {signal.Signals(signum).name}: stopping at the next window or batch boundary")
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()
