"""How old a store object is, told without comparing two hosts' clocks.

An observer (auto_pull, the relaunch policy, a worker choosing clips to take) may see a heartbeat
or claim once, or round after round. Its age is the longer of how long this observer has itself
seen the same bytes, on its own monotonic clock, and the store's own answer (`Store.age_s`: the
S3 server's Date minus Last-Modified, or a folder's mtime), never a writer's timestamp read
against the reader's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from musicsweep.store.base import Store


class Sightings:
    """How long this observer has seen each store object unchanged, on its own monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.first: dict[str, tuple[bytes, float]] = {}

    def unchanged_s(self, key: str, content: bytes) -> float:
        now = self.clock()
        seen = self.first.get(key)
        if seen is None or seen[0] != content:
            self.first[key] = (content, now)
            return 0.0
        return now - seen[1]

    def age_s(self, store: Store, key: str, content: bytes) -> float:
        """How long ago `key` was last written, as far as this observer or the store's clock can tell."""
        return max(self.unchanged_s(key, content), store.age_s(key) or 0.0)
