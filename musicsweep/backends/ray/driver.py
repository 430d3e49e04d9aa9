"""The entrypoint of a launch's Ray job: `python -m musicsweep.backends.ray.driver PLAN`, on the cluster.

PLAN (`LaunchPlan`, base64 JSON written by the backend) names the sweep, the launch, its workers and
what one worker asks of a node; the launch's environment contract arrives as the job's
`runtime_env` variables. The driver starts one actor per worker (`WorkerHost`) in the sweep's
namespace, named `{launch}.worker_N`, with those resources, and `max_restarts`/`max_task_retries`
of `max_retries`: Ray places the workers and restarts one lost with its node on another (a run
that fails while its actor is only unavailable, before Ray has noticed the node is gone, is sent
again). Once a worker's run returns its actor is killed, so an ended worker reads DEAD rather
than ALIVE. While it waits it looks for stop requests in the store (`StoreKeys.stop_request`, written by
`kill_orphans`) every few seconds and kills those workers' actors; each one's guard then ends its
process tree. As often, it asks Ray which nodes died since it started, and releases the claims
their workers held (`lost.py`), so the sweep's other workers take those clips at once. The driver
exits 0 only when every worker's status was 0.
"""

from __future__ import annotations

import os
import sys
import time

from musicsweep.backends.ray.host import LaunchPlan, WorkerHost
from musicsweep.backends.ray.lost import LostNodes, node_of, release_claims_on
from musicsweep.backends.ray.state import actor_name
from musicsweep.contract import LaunchEnv
from musicsweep.layout import StoreKeys
from musicsweep.store import open_store
from musicsweep.store.base import Store

STOP_POLL_S = 2.0


def stop_requests(store: Store, plan: LaunchPlan) -> set[int]:
    """The workers `kill_orphans` asked this launch to end: one listing."""
    prefix = StoreKeys(plan.sweep).stop_requests(plan.launch_id)
    return {int(key.removeprefix(prefix)) for key in store.list(prefix) if key.removeprefix(prefix).isdigit()}


def free_lost_claims(store: Store, plan: LaunchPlan, lost: LostNodes) -> None:
    """Release the claims of workers on nodes Ray declared dead since the last look."""
    try:
        nodes = lost.new()
        released = release_claims_on(store, StoreKeys(plan.sweep), nodes, plan.launch_id) if nodes else {}
    except Exception as error:  # the GCS or the store did not answer: the next look tries again
        print(f"[musicsweep] looking for lost nodes failed: {' '.join(str(error).split())[:300]}", flush=True)
        return
    for node in sorted(nodes):
        jobs = sorted(job_id for job_id, owner in released.items() if node_of(owner.host) == node)
        print(f"[musicsweep] node {node} lost: released {len(jobs)} claim(s) of its workers {jobs}", flush=True)


def main(argv: list[str]) -> int:
    import ray

    plan = LaunchPlan.decode(argv[0])
    ray.init(namespace=plan.namespace)
    host = ray.remote(WorkerHost)
    options = {
        "num_gpus": plan.num_gpus,
        "num_cpus": plan.num_cpus,
        "resources": plan.resources,
        "max_restarts": plan.max_retries,
        "max_task_retries": plan.max_retries,
    }
    actors = {
        wid: host.options(name=actor_name(plan.launch_id, wid), **options).remote(plan, wid) for wid in plan.workers
    }
    runs = {actor.run.remote(): wid for wid, actor in actors.items()}
    store = open_store(LaunchEnv.from_env(os.environ).store)
    lost = LostNodes()
    statuses: dict[int, int | None] = {}
    while runs:
        ready, _ = ray.wait(list(runs), num_returns=1, timeout=STOP_POLL_S)
        if not ready:
            for worker_id in sorted(stop_requests(store, plan) & set(runs.values())):
                print(f"[musicsweep] worker {worker_id}: stop requested", flush=True)
                ray.kill(actors[worker_id], no_restart=True)
            free_lost_claims(store, plan, lost)
            continue
        worker_id = runs.pop(ready[0])
        try:
            statuses[worker_id] = ray.get(ready[0])
        except ray.exceptions.ActorUnavailableError:
            # Its node is gone, and Ray has not decided yet: it restarts the actor elsewhere (then
            # this run goes to the restart) or declares it dead (then the run fails for good).
            time.sleep(STOP_POLL_S)
            runs[actors[worker_id].run.remote()] = worker_id
            continue
        except ray.exceptions.RayError as error:
            statuses[worker_id] = None
            print(f"[musicsweep] worker {worker_id} ended: {' '.join(str(error).split())[:300]}", flush=True)
        print(f"[musicsweep] worker {worker_id} exited with status {statuses[worker_id]}", flush=True)
        ray.kill(actors[worker_id], no_restart=True)
    return 0 if all(status == 0 for status in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
