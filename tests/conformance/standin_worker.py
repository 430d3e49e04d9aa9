"""Stand-in for `python -m musicsweep.worker SPEC...`, run by the conformance suite on every backend.

It keeps the worker's side of the contract with the real code (the environment through
`WorkerContext`, `.pid` files through `write_pid_files`, WAV, cost row and `.done` through
`Delivery.spool_clip` and `Delivery.deliver`, into whatever store the backend configured), but
generates silence instead of music, and it is steered by files in a control folder that the test owns:

- on start it spawns a child and a grandchild (as a model's data loaders would), so stopping a
  worker means stopping its whole tree, and records itself in `worker-{launch}-{worker}.json`;
- it then holds until `release` exists, and writes its clips;
- with `linger` present it then lives on with its tree (an orphan); otherwise it stops its tree
  and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from musicsweep.atomic import atomic_write_text
from musicsweep.worker.claims import Claims, owner_of
from musicsweep.worker.context import StopFlag, WorkerContext
from musicsweep.worker.loop import Worker, write_pid_files
from musicsweep.worker.specs import load_specs

CONTROL_ENV = "MUSICSWEEP_CONFORMANCE_CONTROL"
SAMPLING_RATE = 32000


def main(argv: list[str]) -> int:
    control = Path(os.environ[CONTROL_ENV])
    context = WorkerContext.from_env(dict(os.environ))
    jobs = load_specs([Path(arg) for arg in argv]).jobs
    write_pid_files(jobs, context.work_dir)
    child = subprocess.Popen(["bash", "-c", "sleep 600 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    tree = [os.getpid(), child.pid, grandchild]
    record = {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "tree": tree,
        "launch_id": context.launch_id,
        "worker_id": context.worker_id,
        "work_dir": str(context.work_dir),
        "jobs": [job.job_id for job in jobs],
    }
    atomic_write_text(control / f"worker-{context.launch_id}-{context.worker_id}.json", json.dumps(record))
    while not (control / "release").exists():
        time.sleep(0.1)
    owner = owner_of(context.host, context.launch_id, context.worker_id)
    worker = Worker(context, StopFlag(), Claims(context.store, jobs[0].sweep, owner, context.lease_s))
    for job in jobs:
        assert worker.claims.acquire(job.job_id) is None, f"{job.job_id} is claimed by another worker"
        silence = np.zeros(int(SAMPLING_RATE * job.duration_s), dtype=np.float32)
        delivery = worker.delivery
        delivery.deliver(job, delivery.spool_clip(job, silence, SAMPLING_RATE, 0.01, batch_size=1, resumed_from=None))
    if (control / "linger").exists():
        while True:
            time.sleep(60)
    os.kill(grandchild, signal.SIGKILL)
    child.kill()
    child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
