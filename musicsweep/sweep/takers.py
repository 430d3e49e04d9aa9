"""The relaunch policy: `--relaunch-failed` relaunches only what no live worker of the sweep can take.

A worker that takes clips from the whole sweep (dynamic assignment) says so in its heartbeat
(`pool: true`, with `every_s` and its `host`). It is **live** while that heartbeat is fresh: this
observer saw it change, or the store's clock says it was written, within `FRESH_BEATS` of its
interval, and its lifetime record does not say it finished. No worker's clock is compared with
ours (`store.sightings.Sightings`). A failed or lost clip is left to live workers, not relaunched:
- when a live worker can take it: any, where workers share one store; on a store per host (SSH
  host-disk) only one on the clip's own host;
- or when another worker holds its claim and that claim is fresh (not released, renewed within a
  lease, its owner not dead on this host): that worker is generating it now.
Everything else is relaunched as before (bounded, backed off). So a preempted worker's clips go to
the sweep's live workers first, and a machine is booted only once none is left that could take
them: at worst `FRESH_BEATS` heartbeats after the last one exits or dies.
"""

from __future__ import annotations

from dataclasses import dataclass

from musicsweep.layout import SweepDir
from musicsweep.manifest import JobEntry
from musicsweep.store.base import Store
from musicsweep.store.sightings import Sightings
from musicsweep.sweep.observe import fresh_holder, heartbeat_age_s
from musicsweep.worker.claims import read_latest

FRESH_BEATS = 3.0  # a heartbeat this many intervals old is a worker that exited or died
HEARTBEAT_SUFFIX = ".heartbeat"


@dataclass(frozen=True)
class Taker:
    """A live worker that takes clips from the sweep."""

    launch: str
    worker: int
    host: str

    def describe(self) -> str:
        return f"worker {self.worker} of launch {self.launch} on {self.host}"


def parse_heartbeat_key(key: str) -> tuple[int, str] | None:
    """(worker, launch) of `{sweep}/markers/worker_{N}.{launch}.heartbeat`."""
    name = key.rsplit("/", 1)[-1]
    if not (name.startswith("worker_") and name.endswith(HEARTBEAT_SUFFIX)):
        return None
    worker, _, launch = name.removeprefix("worker_").removesuffix(HEARTBEAT_SUFFIX).partition(".")
    return (int(worker), launch) if worker.isdigit() and launch else None


def live_takers(store: Store, sweep: SweepDir, sightings: Sightings, lease_s: float) -> list[Taker]:
    """Every worker of the sweep, of any launch, that is live and takes clips (one listing, a read each)."""
    takers = []
    for key in sorted(store.list(sweep.keys.markers)):
        parsed = parse_heartbeat_key(key)
        if parsed is None:
            continue
        worker, launch = parsed
        try:
            beat = store.get_json(key)
        except Exception:  # vanished or half-visible: not a live worker this round
            continue
        if not beat.get("pool"):
            continue
        fresh_s = FRESH_BEATS * float(beat.get("every_s", lease_s / 3))
        if heartbeat_age_s(store, sweep.name, launch, worker, beat, sightings) > fresh_s:
            continue
        if finished(store, sweep, worker, launch):
            continue
        takers.append(Taker(launch, worker, str(beat.get("host", ""))))
    return takers


def finished(store: Store, sweep: SweepDir, worker: int, launch: str) -> bool:
    try:
        return bool(store.get_json(sweep.keys.lifetime(worker, launch)).get("finished"))
    except Exception:  # none yet
        return False


def claim_holder(
    store: Store, sweep: SweepDir, job_id: str, entry: JobEntry, sightings: Sightings, lease_s: float
) -> str | None:
    """The owner of another worker's fresh, unreleased claim on the job, described; else None."""
    return fresh_holder(store, read_latest(store, sweep.keys, job_id), entry, sightings, lease_s)


def left_to_live_workers(
    store: Store,
    sweep: SweepDir,
    jobs: dict[str, JobEntry],
    sightings: Sightings,
    lease_s: float,
    per_host: bool,
) -> dict[str, str]:
    """Of `jobs` (ready to relaunch), those a live worker holds or can take: job -> which worker."""
    if not jobs:
        return {}
    takers = live_takers(store, sweep, sightings, lease_s)
    left = {}
    for job_id, entry in jobs.items():
        holder = claim_holder(store, sweep, job_id, entry, sightings, lease_s)
        taker = next((t for t in takers if not per_host or t.host == entry.host), None)
        if holder is not None:
            left[job_id] = f"its claim is held by {holder}"
        elif taker is not None:
            left[job_id] = f"{taker.describe()} can take it"
    return left
