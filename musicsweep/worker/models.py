"""The worker's models: fetched ahead of the first clip, each loaded once per process."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from musicsweep.config import EngineConfig
from musicsweep.worker.faults import kill_point
from musicsweep.worker.lifetime import Lifetime
from musicsweep.worker.log import log
from musicsweep.worker.tally import Tally

if TYPE_CHECKING:  # the engine (torch) loads with the first model, not with the worker
    from musicsweep.engine.generate import MusicEngine


class ModelCache:
    def __init__(self, config: EngineConfig, lifetime: Lifetime, tally: Tally, stop: threading.Event) -> None:
        self.config, self.lifetime, self.tally = config, lifetime, tally
        self.stop = stop  # ends a drill's hang at the load (`faults`), as a spot notice would arrive during it
        self.engines: dict[str, MusicEngine] = {}
        self.sources: dict[str, str] = {}

    def fetch(self, models: list[str]) -> dict[str, str]:
        """Fetch every model before the first clip; returns model -> error for those that cannot be."""
        from musicsweep.engine.cacheahead import cache_ahead

        sources, errors = cache_ahead(models, self.config.hf_home)
        self.sources |= sources
        for error in errors.values():
            log(f"cache-ahead: {error}")
        return errors

    def engine(self, model: str) -> MusicEngine:
        """Loaded once per process, from the folder `fetch` put it in."""
        if model not in self.engines:
            from musicsweep.engine import load_engine

            kill_point("load", self.stop)
            started = time.monotonic()
            engine = load_engine(model, self.config, self.sources.get(model))
            self.engines[model] = engine
            self.lifetime.model_load_s += time.monotonic() - started
            self.tally.touch()  # a loaded model is progress: the stall watchdog's clock restarts
            loaded = engine.loaded
            self.lifetime.times.loaded(model, time.monotonic() - started, loaded.device, loaded.dtype)
            log(f"loaded model {model} in {time.monotonic() - started:.1f}s on {loaded.device} ({loaded.dtype})")
        return self.engines[model]
