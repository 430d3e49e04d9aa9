"""How many clips of a group go into one generate() call."""

from __future__ import annotations

from musicsweep.config import EngineConfig
from musicsweep.job import Job
from musicsweep.worker.log import log
from musicsweep.worker.models import ModelCache


class BatchSizer:
    """The configured size or `auto` (engine.batching), never above what back-off shrank a group to."""

    def __init__(self, config: EngineConfig, models: ModelCache) -> None:
        self.config, self.models = config, models
        self.auto_sizes: dict[str, int] = {}
        self.caps: dict[tuple, int] = {}

    def size(self, job: Job) -> int:
        configured = self.config.batch_size
        if isinstance(configured, int):
            size = configured
        else:
            if job.model not in self.auto_sizes:
                self.auto_sizes[job.model] = self.models.engine(job.model).auto_batch_size()
                log(f"batch_size auto: {self.auto_sizes[job.model]} for {job.model}")
            size = self.auto_sizes[job.model]
        return min(size, self.caps.get(job.group_key, size))

    def known_size(self, job: Job) -> int:
        """`size` where it needs no model loaded; 1 while `auto` has not measured the model yet."""
        if isinstance(self.config.batch_size, str) and job.model not in self.auto_sizes:
            return 1
        return self.size(job)

    def shrink(self, group_key: tuple, failed_size: int, next_size: int) -> None:
        """A batch failed: the rest of its group is never tried at the failed size again."""
        self.caps[group_key] = min(self.caps.get(group_key, failed_size), next_size)
