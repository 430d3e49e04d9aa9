"""Drills on the session's real Ray cluster (tests/fixtures/ray.py) with the tiny model: a node lost mid-sweep."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from ray.job_submission import JobSubmissionClient

from musicsweep import run_sweep
from musicsweep.backends.base import Shard
from musicsweep.backends.ray.host import WORK_FOLDER
from musicsweep.backends.ray.lost import RELEASED_LOST
from musicsweep.config import load_config
from musicsweep.costs.summary import read_lifetimes, summarize
from musicsweep.layout import WORKERS_DIR, worker_log_name
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.worker.claims import read_seen, unreleased_claim
from tests.fixtures.ray import RayTestCluster
from tests.fixtures.servers import wait_until
from tests.helpers import generated_names, set_recovery, uploaded_names, wait_for_sweep, write_ray_config

pytestmark = pytest.mark.e2e  # every test starts workers on the cluster


def test_a_lost_node_s_claims_are_freed_at_once_and_every_clip_is_generated_once(
    project: Path, ray_cluster: RayTestCluster
) -> None:
    """Node loss with dynamic assignment: each worker holds a whole node (2 GPUs) and has a short and
    a long clip (one model each). Once the extra node's worker has delivered its short clip (its log
    in the store says so) and checkpointed its long one (where the fixture makes that node's workers
    hang, holding their claims), the node is killed. The launch's driver
    releases the dead worker's claims at once (the lease is an hour: nothing here waits one out), so
    the head's worker takes the long clip, or Ray's restart of the lost worker does once the head's
    GPUs are free (a restart that comes up before the driver's next look takes its own claim over
    itself); either resumes it from its last window. Every attempt keeps its log and its paid time."""
    write_ray_config(project, ray_cluster, num_gpus=2, max_retries=2)
    set_recovery(project, lease_s=3600)
    clips = [
        {"prompt": f"{model} {seconds}", "duration_s": seconds, "model": model, "seed": seconds}
        for model in ("tiny", "tiny-stereo")
        for seconds in (1, 40)
    ]
    started = time.monotonic()
    plan = run_sweep(clips, "ray-node-loss")
    sweep = plan.sweep
    [launch] = sweep.read_manifest().launch_ids()
    store = open_store(load_config().store)
    extra = ray_cluster.node_tmp("extra") / WORK_FOLDER / sweep.name

    def lost_shard() -> Shard | None:
        """The shard whose worker runs on the extra node, once its stored log shows its short clip
        uploaded and its long clip is checkpointed, by that worker (holding its claim)."""
        for shard in plan.shards:
            short, long = sorted(shard.jobs, key=lambda job: job.duration_s)
            on_extra = (extra / "logs" / worker_log_name(shard.worker_id, launch)).exists()
            log_key = sweep.keys.log(shard.worker_id, launch)
            if (
                on_extra
                and holder_of(store, sweep.keys.claims(long.job_id)) == shard.worker_id
                and store.exists(sweep.keys.partial(long.job_id))
                and store.exists(log_key)
                and short.output_name in uploaded_names(store.get_bytes(log_key).decode())
            ):
                return shard
        return None

    wait_until(lambda: lost_shard() is not None, 300, "the extra node's worker to deliver and checkpoint")
    lost = lost_shard()
    assert lost is not None
    ray_cluster.kill_node("extra")  # started again when a later test asks for the cluster
    states = wait_for_sweep("ray-node-loss", timeout_s=400)
    assert set(states.values()) == {JobState.DONE} and len(states) == 4
    short, long = sorted(lost.jobs, key=lambda job: job.duration_s)
    survivor = next(shard.worker_id for shard in plan.shards if shard is not lost)
    lost_log = sweep.keys.log(lost.worker_id, launch)
    ended = [sweep.keys.log(survivor, launch), sweep.keys.log(lost.worker_id, launch, attempt=1)]  # the restart's
    logs = dict.fromkeys([lost_log, *ended], b"")

    def every_attempt_ended() -> bool:
        """The survivor's and the restart's logs, uploaded once they exit (the lost attempt's stays as it was)."""
        logs.update({key: store.get_bytes(key) for key in logs if store.exists(key)})
        return all(logs[key].count(b"] worker finished with status") == 1 for key in ended)

    try:
        wait_until(every_attempt_ended, 120, "the survivor's and the restart's logs")
    except TimeoutError as error:  # what the driver saw says why: CI shows only the test's output
        driver = JobSubmissionClient(ray_cluster.address).get_job_logs(f"musicsweep-{sweep.name}-{launch}")
        raise AssertionError(f"{error}\nthe logs: {logs}\nthe driver's log:\n{driver}") from None
    texts = {key: data.decode() for key, data in logs.items()}
    names = sorted(job.output_name for shard in plan.shards for job in shard.jobs)
    assert sorted(name for text in texts.values() for name in generated_names(text)) == names
    assert sorted(name for text in texts.values() for name in uploaded_names(text)) == names
    assert uploaded_names(texts[lost_log]) == [short.output_name], "the lost attempt's log is kept"
    assert sum(text.count("resuming 1 clip(s) after window") for text in texts.values()) == 1
    # Freed at once either way (the lease is an hour): by the driver's release, or by Ray's restart of
    # the lost worker taking its own claim over when it came up before the driver's next look.
    released_by_driver = Counter(releaser_of(store, sweep.keys.claims(long.job_id)))[RELEASED_LOST]
    assert released_by_driver <= 1
    # Paid time: the survivor, the lost attempt (its last heartbeat) and the restart, each its own record.
    pulled = project / "runs" / sweep.name / WORKERS_DIR
    lifetimes = read_lifetimes(pulled)
    assert sorted((w.worker_id, w.finished) for w in lifetimes) == sorted(
        [(survivor, True), (lost.worker_id, False), (lost.worker_id, True)]
    )
    summary = summarize(lifetimes, [])
    assert summary.workers == 3 and summary.machine_s == sum(w.machine.seconds for w in lifetimes)
    wall = time.monotonic() - started
    freed = "the driver released" if released_by_driver else "the restart took over"
    print(f"node loss drill: {len(states)} clips, each generated once, the long one resumed ({freed}); {wall:.0f}s")


def holder_of(store: Store, prefix: str) -> int | None:
    """The worker id holding a job's latest claim generation, or None when it is released or unclaimed."""
    keys = sorted(store.list(prefix))
    claim = unreleased_claim(read_seen(store, keys[-1])) if keys else None
    return None if claim is None else claim.owner.worker


def releaser_of(store: Store, prefix: str) -> list[str]:
    """The `released` reasons of a job's claim generations."""
    seen = [read_seen(store, key) for key in sorted(store.list(prefix))]
    return [s.claim.released for s in seen if s is not None and s.claim is not None and s.claim.released]
