"""Where a worker's paid time went, in the shape the calibration reads (`costs/calibration.py`).

The lifetime record already has model load and generation totals; the calibration also needs,
per model, its load time, device and dtype, and per (model, batch size) how much continuation
work (`costs/continuation.work_s`) took how long, plus the setup (cache-ahead) and upload seconds.
Aggregated, so the record stays small however long the sweep. Uploads are timed on the saver
thread while checkpoints are timed on the main thread, so the totals are updated under a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from musicsweep.costs.continuation import work_s


@dataclass
class WorkerTimes:
    setup_s: float = 0.0
    upload_s: float = 0.0
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # -> [count, work_s, audio_s, wall_s]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def loaded(self, model: str, seconds: float, device: str, dtype: Any) -> None:
        self.models.setdefault(model, {}).update(
            load_s=round(seconds, 3), device=str(device), dtype=str(dtype).removeprefix("torch.")
        )

    def chose(self, model: str, size: int) -> None:
        """The batch size the worker picked (`auto` or configured), which short groups do not reach."""
        self.models.setdefault(model, {})["batch_size"] = size

    def batch(self, model: str, size: int, duration_s: float, stride_s: float, wall_s: float) -> None:
        totals = self.batches.setdefault((model, size), [0, 0.0, 0.0, 0.0])
        for index, value in enumerate((1, work_s(duration_s, stride_s), duration_s * size, wall_s)):
            totals[index] += value

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        """Add the block's wall time to `setup_s` or `upload_s`."""
        started = time.monotonic()
        try:
            yield
        finally:
            with self.lock:
                setattr(self, name, getattr(self, name) + time.monotonic() - started)

    def to_dict(self) -> dict[str, Any]:
        batches = [
            {"model": model, "size": size, "count": int(n), "work_s": round(w, 3), "audio_s": a, "wall_s": round(t, 3)}
            for (model, size), (n, w, a, t) in sorted(self.batches.items())
        ]
        return {
            "setup_s": round(self.setup_s, 3),
            "upload_s": round(self.upload_s, 3),
            "models": self.models,
            "batches": batches,
        }
