"""The worker's heartbeat thread: liveness, progress, paid time so far, and claim renewal."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from musicsweep.contract import TEST_HEARTBEAT_S
from musicsweep.layout import WorkerPaths
from musicsweep.store.base import Store
from musicsweep.store.retry import direct
from musicsweep.worker.claims import Claims
from musicsweep.worker.context import WorkerContext
from musicsweep.worker.log import log

HEARTBEAT_INTERVAL_S = float(os.environ.get(TEST_HEARTBEAT_S, "60"))


def heartbeat_interval(lease_s: float) -> float:
    """At most a third of the lease, so two missed beats still leave the claims live."""
    return min(HEARTBEAT_INTERVAL_S, lease_s / 3.0)


class Heartbeat(threading.Thread):
    """Writes the heartbeat (with the time of the last progress and the worker's speed, which the
    sweep's other workers weigh at its tail, `worker.pool`) and the lifetime so far, and renews
    the claims, every interval: a silent host is noticed, a stalled one is told from a busy one, a
    killed worker's paid time still reaches the cost summary, and a live worker keeps its clips."""

    def __init__(
        self,
        context: WorkerContext,
        paths: WorkerPaths,
        lifetime: Callable[[], dict],
        claims: Claims,
        progress: Callable[[], float],
        takes: Callable[[], bool],
        rate: Callable[[], float | None],
    ) -> None:
        super().__init__(daemon=True)
        self.context, self.paths, self.lifetime, self.claims, self.progress = context, paths, lifetime, claims, progress
        self.takes = takes  # True while this worker may still take clips of the sweep's other shards
        self.rate = rate  # its speed in audio s per s, weighed by the sweep's other workers at its tail
        self.interval = heartbeat_interval(claims.lease_s)
        self.stopped = threading.Event()

    def beat(self, store: Store) -> None:
        for job_id in self.claims.renew():
            log(f"claim on {job_id} was taken over by another worker after our lease ran out")
        payload = {"time": time.time(), "pid": os.getpid(), "progress": self.progress(), "audio_rate": self.rate()}
        # what the relaunch policy (sweep/takers.py) reads: how often we beat, where, and whether we take clips
        payload |= {"every_s": self.interval, "host": self.context.host, "pool": self.takes()}
        store.put_json(self.paths.heartbeat_key(self.context.launch_id), payload)
        store.put_json(self.paths.lifetime_key(self.context.launch_id), self.lifetime())

    def run(self) -> None:
        store = direct(self.context.store)  # no retries here: the main thread owns the outage budget
        while not self.stopped.is_set():
            try:
                self.beat(store)
            except Exception as error:  # a missed heartbeat must never kill generation
                log(f"heartbeat failed: {error}")
            self.stopped.wait(self.interval)
