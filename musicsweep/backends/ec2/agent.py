"""What an EC2 instance's script runs around the worker: `python -m musicsweep.backends.ec2.agent fetch|finish`.

`fetch` downloads the specs of this instance's shard and the launch's spec list from the store,
without unpickling any (the worker checks each against the list first). `finish STATUS` marks every
clip of the shard that has neither `.done` nor `.failed` as failed (so `--relaunch-failed` picks
up exactly those), uploads the log, and records when the instance stopped working, for the cost.
Its keys are `layout.StoreKeys`', the same the launcher uploads specs and shard lists to.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from musicsweep.contract import SWEEP, WorkerEnv
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir, WorkerPaths
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.shards import fetch_shard
from musicsweep.worker.finish import exit_reason, mark_unfinished

NOTICE_FILE = "spot-notice.json"
logger = logging.getLogger(__name__)


def finish(store: Store, sweep: SweepDir, launch_id: str, worker_id: int, status: int) -> list[str]:
    """Mark the shard's unfinished clips failed, upload the log, record the end; returns the marked ids."""
    notice = sweep.root / NOTICE_FILE
    reason = f"spot interruption notice: {notice.read_text().strip()}" if notice.exists() else exit_reason(status)
    job_ids = store.get_json(sweep.keys.shard(launch_id, worker_id))["jobs"]
    marked = mark_unfinished(store, sweep.name, job_ids, reason, launch_id, worker_id)
    worker = WorkerPaths(sweep.root, sweep.name, worker_id, launch_id)
    if worker.log.exists():
        store.put_file(worker.log_key, worker.log)
    record = {"end": time.time(), "status": status, "interrupted": notice.exists(), "unfinished": marked}
    store.put_json(sweep.keys.instance_end(launch_id, worker_id), record)
    return marked


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[musicsweep] %(message)s", stream=sys.stdout)  # the instance's log
    parser = argparse.ArgumentParser(prog="python -m musicsweep.backends.ec2.agent", description=__doc__)
    parser.add_argument("action", choices=["fetch", "finish"])
    parser.add_argument("status", nargs="?", type=int, default=0, help="the worker's exit status (finish)")
    args = parser.parse_args(argv)
    env = WorkerEnv.from_env(os.environ)
    if not env.launch.sweep:
        raise MusicsweepError(f"{SWEEP} is not set: the instance's user data exports it")
    store = open_store(env.launch.store)
    sweep = SweepDir(Path(env.job_dir).parent, env.launch.sweep)
    launch_id, worker_id = env.launch.launch_id, env.worker_id
    if args.action == "fetch":
        job_ids = fetch_shard(store, sweep, launch_id, worker_id, env.launch.specs_sha256)
        logger.info(f"fetched {len(job_ids)} job spec(s)")
    else:
        marked = finish(store, sweep, launch_id, worker_id, args.status)
        logger.info(f"{len(marked)} unfinished clip(s) marked for relaunch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
