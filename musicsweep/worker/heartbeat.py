"""The worker's heartbeat thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from musicsweep.layout import WorkerPaths
from musicsweep.store.retry import direct
from musicsweep.worker.context import WorkerContext, log

HEARTBEAT_INTERVAL_S = float(os.environ.get("MUSICSWEEP_HEARTBEAT_S", "60"))


class Heartbeat(threading.Thread):
    """Writes the heartbeat and the lifetime so far every interval: a silent host is noticed, and a
    killed worker's paid time still reaches the cost summary."""

    def __init__(self, context: WorkerContext, paths: WorkerPaths, lifetime: Callable[[], dict]) -> None:
        super().__init__(daemon=True)
        self.context, self.paths, self.lifetime = context, paths, lifetime
        self.stopped = threading.Event()

    def run(self) -> None:
        store = direct(self.context.store)  # no retries here: the main thread owns the outage budget
        while not self.stopped.is_set():
            try:
                store.put_json(self.paths.heartbeat_key, {"time": time.time(), "pid": os.getpid()})
                store.put_json(self.paths.lifetime_key(self.context.launch_id), self.lifetime())
            except Exception as error:  # a missed heartbeat must never kill generation
                log(f"heartbeat failed: {error}")
            self.stopped.wait(HEARTBEAT_INTERVAL_S)
