"""What a worker knows about itself: the environment contract, read once, and its stop flag."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from musicsweep import contract
from musicsweep.config import EngineConfig
from musicsweep.store import open_store, store_config_from_env
from musicsweep.store.base import Store
from musicsweep.store.retry import RetryingStore

EXIT_STOPPED = 75
EXIT_STORE_UNREACHABLE = 76


def log(message: str) -> None:
    """One write per line: the main, saver and heartbeat threads all log, and the drills count whole lines."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}\n", end="", flush=True)


@dataclass
class WorkerContext:
    """The environment contract, read once."""

    work_dir: Path
    store: Store
    worker_id: int
    num_workers: int
    hourly_cost_usd: float
    is_restart: bool
    launch_id: str
    engine_config: EngineConfig
    lease_s: float = 300.0
    host: str = field(default_factory=socket.gethostname)

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> WorkerContext:
        engine_config = EngineConfig(**json.loads(environ.get(contract.ENGINE) or "{}"))
        store_config = store_config_from_env(environ)
        return cls(
            work_dir=Path(environ[contract.JOB_DIR]),
            store=RetryingStore(open_store(store_config), store_config.outage_budget_s, log),
            worker_id=int(environ.get(contract.WORKER_ID, "0")),
            num_workers=int(environ.get(contract.NUM_WORKERS, "1")),
            hourly_cost_usd=float(environ.get(contract.HOURLY_COST_USD, "0")),
            is_restart=environ.get(contract.IS_RESTART, "0") == "1",
            launch_id=environ.get(contract.LAUNCH_ID, "manual"),
            engine_config=engine_config,
            lease_s=float(environ.get(contract.LEASE_S) or 300.0),
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
