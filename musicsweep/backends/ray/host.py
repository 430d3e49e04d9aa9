"""One worker as a Ray actor (`WorkerHost`) and what a launch's job is told (`LaunchPlan`).

The actor runs on whichever node Ray placed it: it fetches its specs from the store into a work
folder under the node's temp folder, renders the common worker script with the environment from
`contract.py` (a worker Ray restarted after losing its node is a restart of the same launch's
worker: it takes over its claims and resumes long clips from their window checkpoints), and runs
it under the guard (`guard.py`), which ends the worker's whole tree with the actor. The worker's
host in its claims names its Ray node (`lost.node_host`), so the driver can free a lost node's
claims at once. A restart is the launch's worker N again with an attempt number of its own
(`open_attempt`), so its log and lifetime record never overwrite the lost attempt's. The actor
uploads the log every `LOG_UPLOAD_S` while it has grown, and once more at the end: a worker lost
with its node leaves its log up to shortly before.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musicsweep.backends.ray.lost import node_host
from musicsweep.contract import LaunchEnv, worker_environment
from musicsweep.errors import MusicsweepError
from musicsweep.layout import JobPaths, SweepDir, WorkerPaths
from musicsweep.scripts import WorkerScript, prepare_commands, write_script
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.shards import fetch_shard

GUARD = "musicsweep.backends.ray.guard"
WORK_FOLDER = "musicsweep-ray"  # under the node's temp folder: the workers' work folders, spool and logs
LOG_UPLOAD_S = 10.0  # how often a running worker's log goes to the store, when it has grown


@dataclass(frozen=True)
class LaunchPlan:
    sweep: str
    launch_id: str
    namespace: str
    workers: dict[int, float]  # worker id -> its hourly cost
    python: str
    num_gpus: float
    num_cpus: float
    resources: dict[str, float] = field(default_factory=dict)
    max_retries: int = 3
    prepare: list[str] = field(default_factory=list)
    kill_grace_s: float = 5.0

    def encode(self) -> str:
        return base64.urlsafe_b64encode(json.dumps(asdict(self), sort_keys=True).encode()).decode()

    @classmethod
    def decode(cls, text: str) -> LaunchPlan:
        plan = cls(**json.loads(base64.urlsafe_b64decode(text)))
        return dataclasses.replace(plan, workers={int(k): float(v) for k, v in plan.workers.items()})


def run_guarded(command: list[str], grace_s: float, tick: Callable[[], None] = lambda: None) -> int:
    """COMMAND under the guard (`guard.py`); returns its exit status, calling `tick` every
    `LOG_UPLOAD_S` meanwhile. The pipe's write end stays with this process only: when it ends,
    however it ends, the guard sees end of file."""
    alive_read, alive_write = os.pipe()
    status_read, status_write = os.pipe()
    guard = [sys.executable, "-m", GUARD, str(grace_s), str(alive_read), str(status_write), *command]
    try:
        subprocess.run(guard, stdin=subprocess.DEVNULL, pass_fds=(alive_read, status_write), check=True)
    finally:
        os.close(alive_read)
        os.close(status_write)
    with os.fdopen(status_read) as answer:
        while not select.select([answer], [], [], LOG_UPLOAD_S)[0]:
            tick()
        text = answer.read()  # until the guard is done
    os.close(alive_write)
    return int(text) if text.strip() else 128 + signal.SIGKILL  # the guard itself was killed


def open_attempt(store: Store, sweep: SweepDir, worker_id: int, launch_id: str, node: str) -> WorkerPaths:
    """A restart's paths: the first attempt number whose log the store does not have, taken by
    creating that log (create-only), so two attempts never share one."""
    for attempt in itertools.count(1):
        paths = sweep.worker(worker_id, launch_id, attempt)
        header = f"[musicsweep] restart {attempt} of worker {worker_id}, on Ray node {node}\n"
        if store.put_new(paths.log_key, header.encode()):
            paths.log.parent.mkdir(parents=True, exist_ok=True)
            paths.log.write_text(header)
            return paths
    raise AssertionError("unreachable")


class LogUploads:
    """The worker's log to the store whenever it has grown (the log only grows)."""

    def __init__(self, store: Store, paths: WorkerPaths) -> None:
        self.store, self.paths, self.size = store, paths, -1

    def __call__(self) -> None:
        try:
            size = self.paths.log.stat().st_size
            if size != self.size:
                self.store.put_file(self.paths.log_key, self.paths.log)
                self.size = size
        except FileNotFoundError:  # the script has not started yet
            pass
        except Exception as error:  # the next tick or the last upload tries again
            print(f"[musicsweep] log upload failed: {error}", flush=True)


class WorkerHost:
    """One worker, as a Ray actor: fetch its specs from the store, run its script under the guard."""

    def __init__(self, plan: LaunchPlan, worker_id: int) -> None:
        self.plan, self.worker_id = plan, worker_id

    def run(self) -> int:
        import ray

        plan, worker_id = self.plan, self.worker_id
        launch = LaunchEnv.from_env(os.environ)
        runtime = ray.get_runtime_context()
        node = runtime.get_node_id()
        sweep = SweepDir(Path(tempfile.gettempdir()) / WORK_FOLDER, plan.sweep)
        store = open_store(launch.store)
        paths = sweep.worker(worker_id, plan.launch_id)
        if runtime.was_current_actor_reconstructed:
            # Ray restarted it after its node was lost: the same launch's worker N again, so it takes
            # over its own claims at once (`Claims.same_worker`) instead of waiting out their lease.
            launch = dataclasses.replace(launch, is_restart=True)
            paths = open_attempt(store, sweep, worker_id, plan.launch_id, node)
        try:
            job_ids = fetch_shard(store, sweep, plan.launch_id, worker_id, launch.specs_sha256)
        except FileNotFoundError as error:
            raise MusicsweepError(
                f"worker {worker_id}: the store {launch.store.url} does not have this launch's work on node "
                f"{node[:12]}: is it a folder every node shares? ({error})"
            ) from None
        count, rate = len(plan.workers), plan.workers[worker_id]
        host = node_host(socket.gethostname(), node)
        env = worker_environment(
            launch.to_env(), str(sweep.root), worker_id, count, rate, host=host, attempt=paths.attempt
        )
        script = WorkerScript(
            sweep=plan.sweep,
            worker_id=worker_id,
            num_workers=count,
            cwd=str(sweep.root),
            log=str(paths.log),
            specs=[str(JobPaths(sweep.root, sweep.name, job_id, "").spec) for job_id in job_ids],
            python=plan.python,
            env=env,
            prologue=prepare_commands(plan.prepare),
        )
        write_script(paths.script, script.render())
        status = run_guarded(["bash", str(paths.script)], plan.kill_grace_s, LogUploads(store, paths))
        if paths.log.exists():
            store.put_file(paths.log_key, paths.log)
        return status
