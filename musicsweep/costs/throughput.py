"""Each worker's throughput, and whose shard its clips came from, from the cost rows alone.

A cost row names the worker that made the clip (`launch_id`, `worker_id`, `host`) and when the clip
was in the store (`finished_at`); the manifest names the worker whose shard the clip was assigned
to. A worker that took clips from another's shard (once its own was done, or from a worker that
was stopped) shows how many, per shard. Rates run from the start of a worker's first batch
(`finished_at` less that batch's generation time) to its last clip: model load and waiting for work
do not count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Worker = tuple[str, int]  # (launch id, worker id): worker ids restart at 0 in each launch


@dataclass
class WorkerRate:
    launch: str
    worker_id: int
    host: str
    clips: int = 0
    audio_s: float = 0.0
    first_s: float | None = None  # when its first batch started
    last_s: float | None = None  # when its last clip was in the store
    taken: Counter[Worker] = field(default_factory=Counter)  # clips made from another worker's shard

    @property
    def span_s(self) -> float:
        if self.first_s is None or self.last_s is None:
            return 0.0
        return self.last_s - self.first_s

    @property
    def clips_per_min(self) -> float | None:
        return self.clips / self.span_s * 60 if self.span_s > 0 else None

    @property
    def audio_s_per_min(self) -> float | None:
        return self.audio_s / self.span_s * 60 if self.span_s > 0 else None

    def add(self, audio_s: float, finished_at: float | None, batch_s: float) -> None:
        self.clips += 1
        self.audio_s += audio_s
        if finished_at is not None:
            start = finished_at - batch_s
            self.first_s = start if self.first_s is None else min(self.first_s, start)
            self.last_s = finished_at if self.last_s is None else max(self.last_s, finished_at)


def number(text: str | None) -> float | None:
    return float(text) if text else None


def worker_rates(
    rows: Iterable[Mapping[str, str]], owners: Mapping[str, tuple[str | None, int | None]]
) -> list[WorkerRate]:
    """Per worker (launch, then worker id), from cost rows as `cost_report.csv` holds them (text)
    and each job's owner (job id -> the manifest's launch and worker). A row written before rows
    named their launch counts for its own shard's launch."""
    rates: dict[Worker, WorkerRate] = {}
    for row in rows:
        owner = owners.get(row["job_id"], (None, None))
        launch = row.get("launch_id") or owner[0] or ""
        maker = (launch, int(row["worker_id"] or 0))
        rate = rates.get(maker)
        if rate is None:
            rate = rates[maker] = WorkerRate(launch, maker[1], row["host"])
        share_s = number(row["generation_time_s"]) or 0.0
        rate.add(float(row["audio_seconds"]), number(row.get("finished_at")), share_s * int(row["batch_size"] or 1))
        if owner[0] is not None and owner[1] is not None and (owner[0], owner[1]) != maker:
            rate.taken[(owner[0], owner[1])] += 1
    return [rates[key] for key in sorted(rates)]


def rate_lines(rates: list[WorkerRate], hosts: Mapping[Worker, str]) -> list[str]:
    """One line per worker: `host#id: N clips, C clips/min, A audio s/min; took K of host#j's shard`.

    `hosts` names each shard's host (from the manifest), for the shards of workers that made none."""
    launches = {rate.launch for rate in rates} | {launch for rate in rates for launch, _ in rate.taken}
    several = len(launches) > 1

    def label(launch: str, worker_id: int, host: str) -> str:
        return f"{host}#{worker_id}" + (f" (launch {launch})" if several else "")

    lines = []
    for rate in rates:
        speed = (
            "-"
            if rate.clips_per_min is None
            else f"{rate.clips_per_min:.1f} clips/min, {rate.audio_s_per_min:.1f} audio s/min"
        )
        line = f"{label(rate.launch, rate.worker_id, rate.host)}: {rate.clips} clip(s), {speed}"
        taken = [
            f"{count} of {label(launch, worker_id, hosts.get((launch, worker_id), '?'))}'s shard"
            for (launch, worker_id), count in sorted(rate.taken.items())
        ]
        lines.append(line + (f"; took {', '.join(taken)}" if taken else ""))
    return lines
