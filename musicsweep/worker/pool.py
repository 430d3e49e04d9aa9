"""Dynamic assignment: a worker that has made its own shard takes clips of its sweep that no live worker holds.

The sweep's jobs are the shard lists every launch writes to the store (`StoreKeys.shard`): those
of this worker's own launch, and of any other launch while one of its workers is alive (a fresh
heartbeat), so a cancelled launch's clips are left alone. With a store on the host's own disk
(`LaunchEnv.host_disk_store`) no other host sees this host's claims, so the jobs are only those
this host's workers were started with (their `.pid` files in the work folder).

A clip is free when it is not done, not failed for good (`musicsweep.failure`) nor failed by this
worker, and its claim is absent (never started), released, held by a dead process on this host,
or watched unrenewed for a lease on this worker's own clock (`Claims.free`). A clip whose owner's
heartbeat has gone silent (a killed worker on another host) is free once that lease has passed,
so the worker waits for it; a clip whose owner is alive is left to it, and when nothing else is
left the worker exits. A heartbeat's age is told as auto_pull tells it (`Sightings`: how long
this worker saw it unchanged, or the store's own clock), never by this host's clock against the
writer's. Taking is `Claims.acquire`'s create-only claim, so two workers never generate one clip.

One round lists the markers, and the claims only when the markers leave a clip to take (not
done, not this worker's, not failed for good); it then reads only the current claims of clips that
were ever claimed and are not done, and the heartbeats of their owners. The shard lists are listed
on the first round and again only when the markers show a heartbeat of a launch whose lists were
not read (a launch writes all its lists before it starts a worker) or a list could not be read:
on a long sweep a round, one per batch, costs two listings, and one at the sweep's end.
Free clips come in the order that keeps batches full and meets owners least: the worker's own
shard from its head, then the group it runs now, then models it has loaded, then every other shard
from its tail (its owner works from its head). At the sweep's tail a slow worker leaves the last
clips to faster ones (`Round.leave_to_faster`, from the speeds in the launch's heartbeats).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import Enum

from musicsweep.failure import permanent_reason
from musicsweep.job import Job
from musicsweep.layout import FAILED_SUFFIX, JOBS_DIR, PID_SUFFIX, done_marker, heartbeat_launch, list_markers
from musicsweep.store.retry import StoreUnreachable
from musicsweep.store.sightings import Sightings
from musicsweep.worker.claims import Claims, latest_claims, read_seen
from musicsweep.worker.context import WorkerContext
from musicsweep.worker.heartbeat import heartbeat_interval
from musicsweep.worker.log import log
from musicsweep.worker.specs import SpecBook
from musicsweep.worker.tally import Tally

TAIL_MARGIN = 1.5  # leave a batch to faster workers only when they would be this much sooner


class Hold(Enum):
    FREE = "free"
    HELD = "held"  # by a live worker: it finishes the clip or hands it back
    WAITING = "waiting"  # by a silent owner: free once its lease runs out


@dataclass(frozen=True)
class Place:
    """Where a clip sits in the sweep: the shard (launch, worker) it was given to, and its position there."""

    launch: str
    worker: int
    position: int


@dataclass
class Round:
    """One look at the sweep: the free clips in the order to take them, and what others hold."""

    free: list[Job] = field(default_factory=list)
    held: int = 0
    waiting: int = 0
    places: dict[str, Place] = field(default_factory=dict)
    rates: list[float] = field(default_factory=list)  # audio s per s of the launch's other live workers

    def leave_to_faster(self, batch: list[Job], rate: float | None) -> bool:
        """True when the launch's other live workers would finish every free clip well before this
        worker (at `rate`) finished `batch`: at a sweep's tail a slow machine's last batch would
        otherwise end the sweep. The fastest live worker never leaves anything, so nothing is stranded."""
        if rate is None or not self.rates:
            return False
        free_s = sum(job.duration_s for job in self.free)
        batch_s = sum(job.duration_s for job in batch)
        others_s = max(free_s / sum(self.rates), batch_s / max(self.rates))
        return batch_s / rate > TAIL_MARGIN * others_s


class Pool:
    """The sweep's clips this worker may take once its own shard is through."""

    def __init__(self, context: WorkerContext, claims: Claims, own: list[Job], tally: Tally, book: SpecBook) -> None:
        self.context, self.claims, self.tally, self.book = context, claims, tally, book
        self.store, self.keys = context.store, claims.keys
        self.own = {job.job_id: Place(context.launch_id, context.worker_id, i) for i, job in enumerate(own)}
        self.jobs: dict[str, Job | None] = {job.job_id: job for job in own}  # None: no spec on this host
        self.shards: dict[tuple[str, int], list[str]] = {}  # read once each
        self.shards_listed = False  # and every list listed then was read
        self.read_failures: dict[str, bool] = {}  # `.failed` marker -> permanent
        self.silence_s = 2 * heartbeat_interval(claims.lease_s) + 1.0
        self.sightings = Sightings()

    def survey(self, group: tuple | None, loaded: set[str]) -> Round:
        """Every free clip of the sweep, best first, and how many others hold."""
        # Before the listing: a clip the saver is delivering is held now or saved (`.done`) by then.
        mine = set(self.claims.held.copy()) | set(self.tally.saved.copy()) | set(self.tally.failed)
        markers = list_markers(self.store, self.keys.sweep)
        beats: dict[tuple[str, int], dict | None] = {}
        places = self.places(markers, beats)
        failures: dict[str, list[str]] = {}
        for name in markers:
            if name.endswith(FAILED_SUFFIX):
                failures.setdefault(name.split(".", 1)[0], []).append(name)
        left = {
            job_id: place
            for job_id, place in places.items()
            if done_marker(job_id) not in markers
            and job_id not in mine
            and not self.failed_for_good(job_id, failures.get(job_id, []))
        }
        latest = latest_claims(self.store, self.keys) if left else {}  # job id -> its newest claim key
        found = Round(places=places, rates=self.rates(markers, beats))
        ranked: list[tuple[tuple, Job]] = []
        for job_id, place in left.items():
            hold = self.hold(job_id, latest[job_id], markers, beats) if job_id in latest else Hold.FREE
            if hold is Hold.HELD:
                found.held += 1
            elif hold is Hold.WAITING:
                found.waiting += 1
            elif (job := self.job(job_id)) is not None:
                own = job_id in self.own  # own clips first, from the head; others' from their tail
                order = place.position if own else -place.position
                ranked.append(((not own, job.group_key != group, job.model not in loaded, order), job))
        found.free = [job for _, job in sorted(ranked, key=lambda pair: pair[0])]
        return found

    def places(self, markers: set[str], beats: dict) -> dict[str, Place]:
        """The clips this worker may take, each at its latest launch's place."""
        if self.context.host_disk_store:
            try:
                names = sorted(os.listdir(self.context.work_dir / JOBS_DIR))
            except FileNotFoundError:
                names = []
            pids = [name.removesuffix(PID_SUFFIX) for name in names if name.endswith(PID_SUFFIX)]
            return {job_id: Place("", -1, i) for i, job_id in enumerate(pids)} | self.own
        self.read_shard_lists(markers)
        workers: dict[str, list[int]] = {}
        for launch, worker in self.shards:
            workers.setdefault(launch, []).append(worker)
        live = {self.context.launch_id} | {
            launch
            for launch, ids in workers.items()
            if any(self.beating(launch, worker, None, markers, beats) for worker in ids)
        }
        found: dict[str, Place] = {}
        for (launch, worker), job_ids in sorted(self.shards.items()):  # launch ids sort by time: the latest wins
            if launch in live:
                found |= {job_id: Place(launch, worker, i) for i, job_id in enumerate(job_ids)}
        return found | self.own

    def rates(self, markers: set[str], beats: dict) -> list[float]:
        """The speeds the launch's other live workers published in their heartbeats."""
        launch, found = self.context.launch_id, []
        others = [worker for other, worker in self.shards if other == launch and worker != self.context.worker_id]
        for worker in others:
            if self.beating(launch, worker, None, markers, beats):
                rate = (beats[launch, worker] or {}).get("audio_rate")
                if isinstance(rate, int | float) and rate > 0:
                    found.append(float(rate))
        return found

    def read_shard_lists(self, markers: set[str]) -> None:
        """Lists the shard lists only when there may be new ones: on the first round, after a list
        could not be read, and once a launch whose lists were not read has a worker beating."""
        known = {launch for launch, _ in self.shards}
        beating = {heartbeat_launch(name) for name in markers} - {None}
        if self.shards_listed and beating <= known:
            return
        self.shards_listed = True
        for key in self.store.list(self.keys.launches):
            shard = self.keys.shard_of(key)
            if shard is None or shard in self.shards:
                continue
            try:
                self.shards[shard] = [str(job_id) for job_id in self.store.get_json(key)["jobs"]]
            except StoreUnreachable:
                raise
            except Exception as error:  # half-written or foreign: read again next round
                log(f"cannot read shard list {key}: {error}")
                self.shards_listed = False

    def beating(self, launch: str, worker: int, pid: int | None, markers: set[str], beats: dict) -> bool:
        """True if worker `worker` of `launch` (process `pid`, if given) wrote its heartbeat lately."""
        key = self.keys.heartbeat(worker, launch)
        if key.rsplit("/", 1)[-1] not in markers:
            return False
        if (launch, worker) not in beats:
            try:
                data = self.store.get_bytes(key)
                fresh = self.sightings.age_s(self.store, key, data) < self.silence_s
                beats[launch, worker] = json.loads(data) if fresh else None
            except StoreUnreachable:
                raise
            except Exception:  # vanished or half-written: silent this round
                beats[launch, worker] = None
        beat = beats[launch, worker]
        return beat is not None and (pid is None or beat.get("pid") == pid)

    def hold(self, job_id: str, key: str, markers: set[str], beats: dict) -> Hold:
        """Who holds a clip that was claimed before, by its current claim."""
        seen = read_seen(self.store, key)
        if seen is None:  # vanished: `acquire` reads it again
            return Hold.FREE
        if seen.claim is not None and self.claims.same_worker(seen.claim.owner):
            return Hold.FREE
        if self.claims.free(job_id, seen):
            return Hold.FREE
        if seen.claim is None:  # cannot be parsed: taken over once watched unrenewed for a lease
            return Hold.WAITING
        owner = seen.claim.owner
        return Hold.HELD if self.beating(owner.launch, owner.worker, owner.pid, markers, beats) else Hold.WAITING

    def failed_for_good(self, job_id: str, failures: list[str]) -> bool:
        """A `.failed` of any attempt that says a retry cannot help (each marker read once)."""
        for name in failures:
            if name not in self.read_failures:
                try:
                    text = self.store.get_bytes(self.keys.markers + name).decode(errors="replace")
                except StoreUnreachable:
                    raise
                except Exception:  # vanished: read again next round
                    continue
                self.read_failures[name] = permanent_reason(text) is not None
            if self.read_failures[name]:
                return True
        return False

    def job(self, job_id: str) -> Job | None:
        """The clip's spec from the work folder, else the store (EC2), checked by the launch's digests."""
        if job_id not in self.jobs:
            self.jobs[job_id] = self.load(job_id)
        return self.jobs[job_id]

    def load(self, job_id: str) -> Job | None:
        try:
            return self.book.load_job(job_id)
        except StoreUnreachable:
            raise
        except FileNotFoundError:  # neither here nor in the store: left to the workers that have it
            return None
        except Exception as error:  # a spec the launch's digests do not vouch for, or unreadable
            log(f"not taking {job_id}: {' '.join(str(error).split())}")
            return None


def describe_place(place: Place | None) -> str:
    """`worker W of launch L` for the log line that says whose clip was taken."""
    if place is None or place.worker < 0:
        return "another worker on this host"
    return f"worker {place.worker} of launch {place.launch}"
