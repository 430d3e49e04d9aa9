"""What following a sweep remembers between polls: orphans' grace, lost jobs and hosts, a store outage.

Each tracker returns the lines worth telling the user (once per change, not once per poll); the
CLI prints them.
"""

from __future__ import annotations

import time

from musicsweep.manifest import Manifest
from musicsweep.states import JobState
from musicsweep.store.retry import one_line
from musicsweep.sweep.observe import Observation


def clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


class OrphanTracker:
    """A worker alive after all its jobs finished is an orphan only once `grace_s` has passed.

    A worker that has just written its last `.done` is still uploading its log and lifetime
    record; killing it at once would lose them.
    """

    def __init__(self, grace_s: float = 30.0) -> None:
        self.grace_s = grace_s
        self.first_seen: dict[str, float] = {}

    def due(self, orphans: list[str]) -> list[str]:
        now = time.monotonic()
        self.first_seen = {job_id: self.first_seen.get(job_id, now) for job_id in orphans}
        return [job_id for job_id, since in self.first_seen.items() if now - since >= self.grace_s]


class LostTracker:
    """A lost job stays `lost` (not failed) until its host answers, its lease expires (then it may be
    relaunched), or `give_up_after_s` passes; hosts are named once per change with why and until when."""

    def __init__(self, give_up_after_s: float | None) -> None:
        self.give_up_after_s = give_up_after_s
        self.first_lost: dict[str, float] = {}
        self.host_since: dict[str, float] = {}
        self.said: dict[str, str] = {}

    def apply(self, states: dict[str, JobState]) -> dict[str, JobState]:
        now = time.time()
        for job_id, state in states.items():
            if state != JobState.LOST:
                self.first_lost.pop(job_id, None)
                continue
            since = self.first_lost.setdefault(job_id, now)
            if self.give_up_after_s is not None and now - since >= self.give_up_after_s:
                states[job_id] = JobState.FAILED
        return states

    def report(self, seen: Observation, manifest: Manifest) -> list[str]:
        """'host H unreachable since T (why); N jobs lost; lease expires T2', once per change."""
        now = time.time()
        self.host_since = {host: self.host_since.get(host, now) for host in seen.unreachable}
        lines = []
        for host, why in seen.unreachable.items():
            lost = [j for j, s in seen.states.items() if s == JobState.LOST and manifest.jobs[j].host == host]
            expiry = max((seen.lease_expires.get(j, now) for j in lost), default=now)
            line = (
                f"host {host} unreachable since {clock(self.host_since[host])} ({why}); "
                f"{len(lost)} job(s) lost; lease expires {clock(expiry)}"
            )
            if self.said.get(host) != line:
                lines.append(line)
                self.said[host] = line
        self.said = {host: line for host, line in self.said.items() if host in seen.unreachable}
        return lines


class OutageTracker:
    """A store outage is told once when it starts, then every minute, not every poll."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.since: float | None = None
        self.last_said = 0.0

    def failed(self, error: BaseException) -> list[str]:
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        if now - self.last_said >= self.every_s or self.last_said < self.since:
            self.last_said = now
            return [f"store unreachable ({now - self.since:.0f} s so far): {one_line(error)}; still polling"]
        return []

    def recovered(self) -> list[str]:
        if self.since is None:
            return []
        line = f"store reachable again after {time.monotonic() - self.since:.0f} s"
        self.since = None
        return [line]
