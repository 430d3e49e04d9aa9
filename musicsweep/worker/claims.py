"""Job-level claims with a lease: two workers of any launches never generate one clip at once.

A job's claims are numbered objects `{sweep}/claims/{job_id}/{generation}.json`, each created
with `Store.put_new` (create-only: a hard link on a folder store, `If-None-Match: *` or its
fallback on S3). The highest generation is the current claim. It names its owner (host, pid,
launch, worker) and a renewal counter; the owner's heartbeat renews it (the counter goes up, so
its bytes change), and it releases the claim with a reason once the clip is done, failed or
stopped. Anyone, of any launch, may take over a claim by creating the next generation, and of
several takers exactly one create succeeds, but only:
- once released;
- when its owner ran on this host and is dead (a SIGKILLed worker), or was an earlier run of the
  same launch's same worker (a requeued SLURM task, a Ray restart) no longer alive on this host;
- or once the taker has itself watched the same generation with the same bytes stay unrenewed for
  the lease's length, on its own monotonic clock (Chubby-style). No two hosts' clocks are ever
  compared: a clock hours off changes nothing. The worst case is a take-over one lease after the
  taker first saw the last renewal, which a deferring worker notices within one heartbeat.
Taking over, an earlier run's claim included, always creates the next generation, so of a taker, a
restart and a release written on a dead owner's behalf (`release_for_dead`: Ray's driver, for a
node Ray declared dead) exactly one create succeeds; only a worker's own claim is rewritten in place.
A claim that cannot be parsed is logged once and watched like any other: unrenewed, it is taken
over after a lease. `expires` (the owner's wall clock plus the lease) is written for people
reading a claim and for older readers; nothing here compares it with another clock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from musicsweep.layout import StoreKeys
from musicsweep.store.base import Store, json_bytes
from musicsweep.worker.log import log

DEFAULT_LEASE_S = 300.0
UNKNOWN_OWNER_WORKER = -1


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    launch: str
    worker: int


UNKNOWN = Owner("?", 0, "?", UNKNOWN_OWNER_WORKER)  # the owner of a claim that cannot be parsed


@dataclass(frozen=True)
class Claim:
    generation: int
    owner: Owner
    expires: float  # the owner's wall clock: shown, never compared with another host's
    renewals: int = 0
    released: str | None = None  # why the owner gave it up: done, failed, stopped, ...

    def to_bytes(self) -> bytes:
        payload = {"generation": self.generation, "owner": asdict(self.owner), "expires": self.expires}
        return json_bytes(payload | {"renewals": self.renewals, "released": self.released})

    @classmethod
    def from_json(cls, payload: dict) -> Claim:
        released = payload.get("released")
        return cls(
            int(payload["generation"]),
            Owner(**payload["owner"]),
            float(payload["expires"]),
            int(payload.get("renewals", 0)),
            None if released is None else str(released),
        )


@dataclass(frozen=True)
class Seen:
    """A claim as read from the store: its bytes, and the claim when they parse."""

    key: str
    generation: int
    data: bytes
    claim: Claim | None
    error: str = ""


def generation_of(key: str) -> int:
    return int(key.rsplit("/", 1)[-1].split(".", 1)[0])


def read_latest(store: Store, keys: StoreKeys, job_id: str) -> Seen | None:
    """The job's highest-generation claim (one listing, one read), or None if never claimed."""
    for key in sorted(store.list(keys.claims(job_id)), reverse=True):
        seen = read_seen(store, key)
        if seen is not None:
            return seen
    return None


def latest_claims(store: Store, keys: StoreKeys) -> dict[str, str]:
    """Every claimed job's highest-generation claim key: one listing."""
    prefix = keys.all_claims
    latest: dict[str, str] = {}
    for key in store.list(prefix):
        job_id = key.removeprefix(prefix).split("/", 1)[0]
        latest[job_id] = max(latest.get(job_id, ""), key)
    return latest


def read_seen(store: Store, key: str) -> Seen | None:
    """The claim at `key` as read, or None if it is gone (removed after a listing)."""
    try:
        data = store.get_bytes(key)
    except FileNotFoundError:  # removed between the listing and the read (claims are never removed on S3)
        return None
    try:
        return Seen(key, generation_of(key), data, Claim.from_json(json_loads(data)))
    except (ValueError, KeyError, TypeError) as error:
        return Seen(key, generation_of(key), data, None, " ".join(str(error).split()) or type(error).__name__)


def unreleased_claim(seen: Seen | None) -> Claim | None:
    """The claim `seen` holds while its owner has not given it up; None if absent, unparsable or released."""
    if seen is None or seen.claim is None or seen.claim.released is not None:
        return None
    return seen.claim


def json_loads(data: bytes) -> dict:
    payload = json.loads(data)
    if not isinstance(payload, dict):
        raise TypeError("not a JSON object")
    return payload


def current_claim(store: Store, keys: StoreKeys, job_id: str) -> Claim | None:
    """The job's current claim, or None if never claimed; one that cannot be parsed reads as an
    unknown owner's, never released."""
    seen = read_latest(store, keys, job_id)
    if seen is None:
        return None
    return seen.claim or Claim(seen.generation, UNKNOWN, 0.0)


class Claims:
    """This worker's claims: acquire before generating, renew from the heartbeat, release after.

    `clock` (monotonic) times how long another owner's claim has gone unrenewed; `wall` only
    stamps this worker's own `expires`. Tests inject both."""

    def __init__(
        self,
        store: Store,
        sweep: str,
        owner: Owner,
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.keys, self.owner, self.lease_s = store, StoreKeys(sweep), owner, lease_s
        self.clock, self.wall = clock, wall
        self.held: dict[str, int] = {}  # job id -> generation
        self.renewals: dict[str, int] = {}  # job id -> this worker's renewals of its claim
        self.watched: dict[str, tuple[int, bytes, float]] = {}  # job id -> (generation, bytes, first seen)
        self.told_unreadable: set[str] = set()
        self.lock = threading.Lock()

    def same_worker(self, owner: Owner) -> bool:
        """This worker, or an earlier run of it that is gone (a requeued SLURM task): one launch runs
        worker N once at a time. On this host, a live other process of the same launch and worker
        is a duplicate (say, a script another launch overwrote), never an earlier run of this one."""
        if (owner.launch, owner.worker) != (self.owner.launch, self.owner.worker):
            return False
        return owner.host != self.owner.host or owner.pid == self.owner.pid or self.owner_dead(owner)

    def earlier_run(self, seen: Seen) -> bool:
        return seen.claim is not None and self.same_worker(seen.claim.owner)

    def owner_dead(self, owner: Owner) -> bool:
        return dead_on_host(owner, self.owner.host)

    def unrenewed_s(self, job_id: str, seen: Seen) -> float:
        """How long this worker has itself seen `seen` unchanged (0 on first sight or after a change)."""
        now = self.clock()
        generation, data, since = self.watched.get(job_id, (-1, b"", now))
        if (generation, data) != (seen.generation, seen.data):
            since = now
        self.watched[job_id] = (seen.generation, seen.data, since)
        return now - since

    def free(self, job_id: str, seen: Seen) -> bool:
        """May this worker take over `seen`: released, its owner dead on this host, or watched unrenewed for a lease."""
        if seen.claim is None and seen.key not in self.told_unreadable:
            self.told_unreadable.add(seen.key)
            log(f"claim {seen.key} cannot be parsed ({seen.error}); treated as unrenewed, taken over after a lease")
        if seen.claim is not None and (seen.claim.released is not None or self.owner_dead(seen.claim.owner)):
            return True
        return self.unrenewed_s(job_id, seen) >= self.lease_s

    def _write(self, job_id: str, generation: int, create: bool, released: str | None = None) -> bool:
        renewals = self.renewals.get(job_id, -1) + 1
        self.renewals[job_id] = renewals
        claim = Claim(generation, self.owner, self.wall() + (0.0 if released else self.lease_s), renewals, released)
        key = self.keys.claim(job_id, generation)
        if create:
            return self.store.put_new(key, claim.to_bytes())
        self.store.put_bytes(key, claim.to_bytes())
        return True

    def acquire(self, job_id: str) -> Claim | None:
        """Claim the job; returns None on success, else the other owner's claim (an unknown owner's
        when it cannot be parsed)."""
        seen = read_latest(self.store, self.keys, job_id)
        if seen is not None and seen.claim is not None and seen.claim.owner == self.owner:
            generation = seen.generation  # already ours: renewed in place
            self.renewals[job_id] = seen.claim.renewals
            self._write(job_id, generation, create=False)
        elif seen is not None and not self.earlier_run(seen) and not self.free(job_id, seen):
            return seen.claim or Claim(seen.generation, UNKNOWN, 0.0)
        else:
            generation = 0 if seen is None else seen.generation + 1
            self.renewals.pop(job_id, None)
            if not self._write(job_id, generation, create=True):
                return current_claim(self.store, self.keys, job_id) or (seen.claim if seen else None)
        with self.lock:
            self.held[job_id] = generation
            self.watched.pop(job_id, None)
        return None

    def renew(self) -> list[str]:
        """Renew every held claim (its counter goes up); returns the jobs taken over by someone else."""
        lost = []
        for job_id in list(self.held):
            with self.lock:  # never renew a claim that `release` is releasing
                generation = self.held.get(job_id)
                if generation is None:
                    continue
                seen = read_latest(self.store, self.keys, job_id)
                if seen is not None and seen.generation > generation:
                    lost.append(job_id)  # our renewals stopped reaching the store for a lease (an outage)
                    continue
                self._write(job_id, generation, create=False)
        return lost

    def still_held(self, job_id: str) -> bool:
        """True unless another worker took the job over (checked before uploading its WAV)."""
        current = current_claim(self.store, self.keys, job_id)
        return current is None or self.same_worker(current.owner)

    def release(self, job_id: str, reason: str = "released") -> None:
        """Give the claim up (the clip is done, failed or stopped): anyone may take it at once."""
        with self.lock:
            generation = self.held.pop(job_id, None)
            if generation is not None:
                self._write(job_id, generation, create=False, released=reason)
                self.renewals.pop(job_id, None)


def release_for_dead(store: Store, keys: StoreKeys, job_id: str, generation: int, by: Owner, reason: str) -> bool:
    """Release generation `generation`, whose owner is known dead, on its behalf: the next generation,
    create-only, so a worker that took the clip first keeps it (False then). `by` names the writer,
    never the dead owner, so a worker that outlived its node's loss never reads it as its own claim."""
    claim = Claim(generation + 1, by, time.time(), 0, reason)
    return store.put_new(keys.claim(job_id, generation + 1), claim.to_bytes())


def dead_on_host(owner: Owner, host: str) -> bool:
    """True only when the owner ran on `host` (this one) and its process is gone (a reused pid errs safe)."""
    if owner.host != host:
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return process_is_zombie(owner.pid)


def process_is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def owner_of(host: str, launch: str, worker: int) -> Owner:
    return Owner(host, os.getpid(), launch, worker)
