"""Claims of workers whose Ray node is gone, released by the launch's driver at once.

A Ray worker names its host in its claims as `HOSTNAME@ray-NODE` (`node_host`): the processes of one
node share a pid namespace, so a dead pid there is told as on any host (`claims.dead_on_host`), and
the node's id tells which claims died with it. When Ray declares a node dead, the driver releases
every unreleased claim of the sweep whose owner ran there (`claims.release_for_dead`: the next
generation, create-only), so the sweep's other workers take those clips at once, resuming long ones
from their last window, instead of waiting out the lease while Ray waits for resources to restart
the lost worker; the restart finds them done or held, or takes what is left. One claim listing and
one read per claimed clip, once per lost node.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from musicsweep.layout import StoreKeys
from musicsweep.store.base import Store
from musicsweep.worker.claims import Owner, latest_claims, read_seen, release_for_dead, unreleased_claim

NODE_MARK = "@ray-"
NODE_ID_CHARS = 16  # of Ray's 56 hex digits: enough to tell a cluster's nodes apart, short in logs
RELEASED_LOST = "node lost"
DRIVER_WORKER = -2  # the worker id of a release the driver writes: no worker reads it as its own


def node_host(hostname: str, node_id: str) -> str:
    return f"{hostname}{NODE_MARK}{node_id[:NODE_ID_CHARS]}"


def node_of(host: str) -> str | None:
    """The Ray node in a worker's host name (`node_host`), or None for a host outside Ray."""
    _, mark, node = host.rpartition(NODE_MARK)
    return node if mark else None


def dead_nodes() -> set[str]:
    """The nodes this cluster has declared dead, as `node_host` names them (one GCS call)."""
    import ray

    return {node["NodeID"][:NODE_ID_CHARS] for node in ray.nodes() if not node["Alive"]}


class LostNodes:
    """Nodes declared dead since the driver started (those dead before ran none of its workers)."""

    def __init__(self, dead: Callable[[], set[str]] = dead_nodes) -> None:
        self.dead = dead
        self.known = dead()

    def new(self) -> set[str]:
        found = self.dead() - self.known
        self.known |= found
        return found


def release_claims_on(store: Store, keys: StoreKeys, nodes: set[str], launch_id: str) -> dict[str, Owner]:
    """Release every unreleased claim of the sweep whose owner ran on `nodes`; returns job -> dead owner
    for those released (one a live worker took first is left to it)."""
    releaser = Owner(socket.gethostname(), os.getpid(), launch_id, DRIVER_WORKER)
    released = {}
    for job_id, key in latest_claims(store, keys).items():
        seen = read_seen(store, key)
        claim = unreleased_claim(seen)
        if seen is None or claim is None or node_of(claim.owner.host) not in nodes:
            continue
        if release_for_dead(store, keys, job_id, seen.generation, releaser, RELEASED_LOST):
            released[job_id] = claim.owner
    return released
