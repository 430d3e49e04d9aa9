"""When following a sweep polls next: soon after a change, less often while nothing changes.

A local poll is a `ps` and a folder listing, so the local backend polls every half second at
first and a finished sweep is reported at once; a poll that costs ssh round trips or API calls
backs off from a few seconds up to the `--interval` ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROWTH = 1.5


@dataclass
class PollSchedule:
    """Waits `first` seconds after a poll that saw a change, growing by GROWTH up to `longest`."""

    first: float
    longest: float
    wait: float = field(init=False)
    last: dict[str, str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.first = min(self.first, self.longest)
        self.wait = self.first

    def next_wait(self, states: dict[str, str]) -> float:
        """Seconds to sleep after a poll that saw `states`."""
        if states != self.last:
            self.last, self.wait = dict(states), self.first
        else:
            self.wait = min(self.longest, self.wait * GROWTH)
        return self.wait


def schedule_for(intervals: tuple[float, float], ceiling_s: float | None) -> PollSchedule:
    """The backend's (first, longest) waits; `--interval` replaces the longest."""
    first, longest = intervals
    return PollSchedule(first, longest if ceiling_s is None else ceiling_s)
