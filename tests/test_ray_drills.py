"""Drills on the session's real Ray cluster (tests/fixtures/ray.py) with the tiny model: a node lost mid-sweep."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from musicsweep import run_sweep
from musicsweep.backends.base import Shard
from musicsweep.backends.ray.host import WORK_FOLDER
from musicsweep.config import load_config
from musicsweep.states import JobState
from musicsweep.store import open_store
from tests.fixtures.ray import RayTestCluster
from tests.fixtures.servers import wait_until
from tests.helpers import wait_for_sweep, write_ray_config

pytestmark = pytest.mark.e2e  # every test starts workers on the cluster


def test_a_lost_node_s_worker_is_restarted_and_every_clip_is_generated_once(
    project: Path, ray_cluster: RayTestCluster
) -> None:
    """Node loss: each worker holds a whole node (2 GPUs) and has a short and a long clip (one model
    each, so the shards are fixed). Once the extra node's worker has delivered its short clip and
    checkpointed its long one, the node is killed. Ray restarts that worker on the head when the
    head's worker is done; the restart skips the delivered clip and resumes the long one."""
    write_ray_config(project, ray_cluster, num_gpus=2, max_retries=2)
    # Fixed shards: Ray's restart is what this drill follows. With dynamic assignment the head's
    # worker would wait out the dead owner's lease for the long clip while Ray waits for its GPUs.
    with open(project / "musicsweep.yaml", "a") as config:
        config.write("worker:\n  take_from_others: false\n")
    clips = [
        {"prompt": f"{model} {seconds}", "duration_s": seconds, "model": model, "seed": seconds}
        for model in ("tiny", "tiny-stereo")
        for seconds in (1, 40)
    ]
    started = time.monotonic()
    plan = run_sweep(clips, "ray-node-loss")
    sweep = plan.sweep
    store = open_store(load_config().store)
    extra = ray_cluster.node_tmp("extra") / WORK_FOLDER / sweep.name

    def lost_shard() -> Shard | None:
        """The shard whose worker runs on the extra node, once it has a clip done and one checkpointed."""
        for shard in plan.shards:
            short, long = sorted(shard.jobs, key=lambda job: job.duration_s)
            on_extra = (extra / "logs" / f"worker_{shard.worker_id}.log").exists()
            if (
                on_extra
                and store.exists(sweep.keys.done(short.job_id))
                and store.exists(sweep.keys.partial(long.job_id))
            ):
                return shard
        return None

    wait_until(lambda: lost_shard() is not None, 300, "the extra node's worker to deliver and checkpoint")
    lost = lost_shard()
    assert lost is not None
    ray_cluster.kill_node("extra")
    try:
        states = wait_for_sweep("ray-node-loss", timeout_s=400)
    finally:
        ray_cluster.start_node("extra")
    assert set(states.values()) == {JobState.DONE} and len(states) == 4
    short, long = sorted(lost.jobs, key=lambda job: job.duration_s)
    log_key = sweep.keys.log(lost.worker_id)  # the restart's log, uploaded once it exits (the first died)
    wait_until(lambda: b"] worker finished with status" in store.get_bytes(log_key), 60, "the restart's log")
    restarted = store.get_bytes(log_key).decode()
    uploaded = [line.split("] uploaded ")[1].strip() for line in restarted.splitlines() if "] uploaded " in line]
    assert uploaded == [long.output_name], "the restart delivers only the clip the lost node had not"
    assert f"skip {short.output_name}: already in the store" in restarted
    assert "resuming 1 clip(s) after window" in restarted
    wall = time.monotonic() - started
    print(f"node loss drill: {len(states)} clips, all done once, the long one resumed; wall {wall:.0f}s")
    ray_cluster.wait_nodes(2)
