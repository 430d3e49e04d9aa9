"""The lifetime record: this process's paid time so far, for the sweep's paid-versus-marginal summary.

The heartbeat writes it every beat (so a killed worker's time still counts) and the worker once
more when it ends; `times` is the calibration's breakdown (`worker.timing`).
"""

from __future__ import annotations

import time

from musicsweep.worker.context import WorkerContext
from musicsweep.worker.tally import Tally
from musicsweep.worker.timing import WorkerTimes


class Lifetime:
    def __init__(self, context: WorkerContext, tally: Tally, started: float) -> None:
        self.context, self.tally, self.started = context, tally, started
        self.model_load_s = 0.0
        self.generation_s = 0.0
        self.times = WorkerTimes()

    def record(self, finished: bool) -> dict:
        """Epoch seconds from start to now, and what the time went to."""
        context = self.context
        return {
            "launch_id": context.launch_id,
            "worker_id": context.worker_id,
            "host": context.host,
            "start": self.started,
            "end": time.time(),
            "hourly_cost_usd": context.hourly_cost_usd,
            "model_load_s": round(self.model_load_s, 3),
            "generation_s": round(self.generation_s, 3),
            "clips": len(self.tally.saved),
            "finished": finished,
        } | self.times.to_dict()
