"""Job-level claims with a lease: two workers of any launches never generate one clip at once.

A job's claims are numbered objects `{sweep}/claims/{job_id}/{generation}.json`, each created
with `Store.put_new` (create-only: a hard link on a folder store, `If-None-Match: *` or its
fallback on S3). The highest generation is the current claim. It names its owner (host, pid,
launch, worker) and an expiry; the owner's heartbeat renews the expiry, and it releases the
claim (expiry now) once the clip is done or failed. Anyone, of any launch, may take over only a
claim that has expired or been released, by creating the next generation: of several takers
exactly one create succeeds. Without waiting out the lease, a worker may also take over a claim
whose owner ran on its own host and is dead (a SIGKILLed worker), or was an earlier run of the
same launch's same worker (a requeued SLURM task) no longer alive on this host. Expiry is
wall-clock time, so hosts' clocks must agree to well within the lease (NTP does).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass

from musicsweep.layout import StoreKeys
from musicsweep.store.base import Store, json_bytes

DEFAULT_LEASE_S = 300.0


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    launch: str
    worker: int


@dataclass(frozen=True)
class Claim:
    generation: int
    owner: Owner
    expires: float

    @property
    def live(self) -> bool:
        return self.expires > time.time()

    def to_bytes(self) -> bytes:
        return json_bytes({"generation": self.generation, "owner": asdict(self.owner), "expires": self.expires})

    @classmethod
    def from_json(cls, payload: dict) -> Claim:
        return cls(int(payload["generation"]), Owner(**payload["owner"]), float(payload["expires"]))


def current_claim(store: Store, keys: StoreKeys, job_id: str) -> Claim | None:
    """The job's highest-generation claim (one listing, one read), or None if never claimed."""
    listed = sorted(store.list(keys.claims(job_id)))
    for key in reversed(listed):
        try:
            return Claim.from_json(store.get_json(key))
        except (OSError, ValueError, KeyError, TypeError):  # vanished or half-visible: try the previous one
            continue
    return None


class Claims:
    """This worker's claims: acquire before generating, renew from the heartbeat, release after."""

    def __init__(self, store: Store, sweep: str, owner: Owner, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.store, self.keys, self.owner, self.lease_s = store, StoreKeys(sweep), owner, lease_s
        self.held: dict[str, int] = {}  # job id -> generation
        self.lock = threading.Lock()

    def same_worker(self, owner: Owner) -> bool:
        """This worker, or an earlier run of it that is gone (a requeued SLURM task): one launch runs
        worker N once at a time. On this host, a live other process of the same launch and worker
        is a duplicate (say, a script another launch overwrote), never an earlier run of this one."""
        if (owner.launch, owner.worker) != (self.owner.launch, self.owner.worker):
            return False
        return owner.host != self.owner.host or owner.pid == self.owner.pid or self.owner_dead(owner)

    def owner_dead(self, owner: Owner) -> bool:
        """True only when the owner ran on this host and its process is gone (a reused pid errs on the safe side)."""
        if owner.host != self.owner.host:
            return False
        try:
            os.kill(owner.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return process_is_zombie(owner.pid)

    def _write(self, job_id: str, generation: int, expires: float, create: bool) -> bool:
        claim = Claim(generation, self.owner, expires)
        key = self.keys.claim(job_id, generation)
        if create:
            return self.store.put_new(key, claim.to_bytes())
        self.store.put_bytes(key, claim.to_bytes())
        return True

    def acquire(self, job_id: str) -> Claim | None:
        """Claim the job; returns None on success, else the live claim of its other owner."""
        current = current_claim(self.store, self.keys, job_id)
        if current is not None and self.same_worker(current.owner):
            generation = current.generation
            self._write(job_id, generation, time.time() + self.lease_s, create=False)
        elif current is not None and current.live and not self.owner_dead(current.owner):
            return current
        else:
            generation = 0 if current is None else current.generation + 1
            if not self._write(job_id, generation, time.time() + self.lease_s, create=True):
                return current_claim(self.store, self.keys, job_id) or current
        with self.lock:
            self.held[job_id] = generation
        return None

    def renew(self) -> list[str]:
        """Push every held claim's expiry one lease ahead; returns the jobs taken over by someone else."""
        lost = []
        for job_id in list(self.held):
            with self.lock:  # never renew a claim that `release` is expiring
                generation = self.held.get(job_id)
                if generation is None:
                    continue
                current = current_claim(self.store, self.keys, job_id)
                if current is not None and current.generation > generation:
                    lost.append(job_id)  # our lease ran out (a long outage) and another worker took over
                    continue
                self._write(job_id, generation, time.time() + self.lease_s, create=False)
        return lost

    def still_held(self, job_id: str) -> bool:
        """True unless another worker took the job over (checked before uploading its WAV)."""
        current = current_claim(self.store, self.keys, job_id)
        return current is None or self.same_worker(current.owner)

    def release(self, job_id: str) -> None:
        """Expire the claim now (the clip is done or failed): a later attempt need not wait out the lease."""
        with self.lock:
            generation = self.held.pop(job_id, None)
            if generation is not None:
                self._write(job_id, generation, time.time(), create=False)


def process_is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def owner_of(host: str, launch: str, worker: int) -> Owner:
    return Owner(host, os.getpid(), launch, worker)
