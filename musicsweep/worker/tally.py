"""What has become of a worker's clips so far, and when the last one finished.

Saved, failed and skipped clips make the exit status and the lifetime record; the progress line
and its clock are what the heartbeat reports to the stall watchdog. The main and saver threads
both count finished clips, so counting is done under a lock.
"""

from __future__ import annotations

import threading
import time

from musicsweep.engine.progress import Progress
from musicsweep.job import Job
from musicsweep.worker.log import log


class Tally:
    def __init__(self) -> None:
        self.progress = Progress(0, 0.0)
        self.last_progress = time.time()
        self.saved: set[str] = set()
        self.failed: list[str] = []
        self.skipped = 0
        self.counted: set[str] = set()
        self.rate: float | None = None  # audio seconds per second of generation, recent batches weighted most
        self.lock = threading.Lock()

    def start(self, jobs: list[Job]) -> None:
        self.progress = Progress(len(jobs), sum(job.duration_s for job in jobs))
        self.counted = {job.job_id for job in jobs}

    def include(self, job: Job) -> None:
        """A clip taken from another shard joins the totals (once)."""
        with self.lock:
            if job.job_id not in self.counted:
                self.counted.add(job.job_id)
                self.progress.total_clips += 1
                self.progress.total_audio_s += job.duration_s

    def observe(self, audio_s: float, elapsed_s: float) -> None:
        """A batch's speed: the heartbeat publishes it, so the sweep's other workers know this one's pace."""
        if elapsed_s > 0:
            speed = audio_s / elapsed_s
            self.rate = speed if self.rate is None else 0.5 * (self.rate + speed)

    def touch(self) -> None:
        """Something other than a finished clip counts as progress (a model loaded, a window done)."""
        self.last_progress = time.time()

    def advance(self, clips: int, audio_s: float, generated: bool = True) -> None:
        """Count finished clips; the heartbeat reports the time of the last one (the stall watchdog)."""
        with self.lock:
            self.last_progress = time.time()
            line = self.progress.advance(clips, audio_s, generated=generated)
        log(line)
