"""Ray backend: one Ray job per launch, submitted through the Jobs API, so `launch` returns at once.

The job's driver (`driver.py`) starts one actor per worker (`host.py`) with the configured
resources; Ray places them, and restarts a worker lost with its node (`max_retries`). Each worker
fetches its specs from the store (`store/shards.py`), so the store must be one every node reaches:
`s3://`, or a folder every node shares. This musicsweep travels with the job (`code.py`).

A poll is one state API call (the sweep's actors) plus one marker listing; a worker whose actor
does not exist yet costs one more call for its job's status. Killing an orphan is a stop request
in the store, which the launch's driver acts on: it ends the actor, and the actor's guard
(`guard.py`) ends the worker's tree. `cancel` stops the launches' jobs, which ends their actors
the same way. `musicsweep doctor` probes the store from a task with a small job (`control.py`).

Modules: `settings` (musicsweep.yaml), `cluster` (the Jobs and state APIs), `state` (what the
manifest keeps), `code` (shipping this musicsweep), `driver`, `host`, `guard` and `control` (what
runs on the cluster).
"""

from __future__ import annotations

import math
import shlex
import time
import uuid
from importlib import metadata

from musicsweep.backends.base import Backend, Launch, Shard, balanced_shards
from musicsweep.backends.ray.cluster import TERMINAL_JOB_STATES, ClusterUnreachable, RayCluster
from musicsweep.backends.ray.control import SEEN_SUFFIX
from musicsweep.backends.ray.host import LaunchPlan
from musicsweep.backends.ray.settings import RayConfig, check_settings
from musicsweep.backends.ray.state import RayJob, RayJobs, WorkerRef, sweep_namespace
from musicsweep.config import Config, typed_section
from musicsweep.contract import LaunchEnv, store_config_to_env
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import SweepDir, list_markers
from musicsweep.manifest import Manifest
from musicsweep.states import Executor, JobState, job_states
from musicsweep.store import open_store
from musicsweep.store.pull import pull_results
from musicsweep.store.shards import put_specs

CANCEL_WAIT_S = 120.0
PROBE_WAIT_S = 180.0  # a job starts in seconds on a quiet cluster, in a minute on a loaded one
PROBE_PREFIX = "_musicsweep/doctor"
PENDING_ACTOR_STATES = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "RESTARTING")
WAITING = Executor(JobState.PENDING, False)


def actor_executor(actor_state: str | None, job_status: str | None) -> Executor:
    """A worker from its actor's state, or from its job's status while it has no actor yet."""
    if actor_state == "ALIVE":
        return Executor(JobState.RUNNING, True)
    if actor_state in PENDING_ACTOR_STATES:
        return WAITING  # waiting for resources, or restarting after its node was lost
    if actor_state == "DEAD":
        return Executor(JobState.FAILED, False)
    if job_status in (None, *TERMINAL_JOB_STATES):
        return Executor(JobState.FAILED, False)  # its job ended (or is gone) without starting it
    return WAITING


def local_ray_version() -> str | None:
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return None


class RayBackend(Backend):
    name = "ray"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.where = config.where("backends.ray")
        self.settings = typed_section(RayConfig, config.backend_section("ray"), self.where)
        check_settings(self.settings, config)
        self.cluster = RayCluster(self.settings.address, self.key("address"))

    def key(self, name: str) -> str:
        """`FILE: key 'backends.ray.NAME'`, for error messages."""
        return self.config.where(f"backends.ray.{name}")

    # ---- before anything is written
    def check_version(self) -> str:
        """The cluster's Ray version, which must be the launcher's."""
        here = local_ray_version()
        if here is None:
            raise MusicsweepError(f"{self.where}: Ray is not installed here: install musicsweep with the 'ray' extra")
        there = self.cluster.ray_version()
        if there != here:
            raise MusicsweepError(
                f"{self.key('address')}: the cluster runs Ray {there}, this launcher Ray {here}: install ray=={there}"
            )
        return there

    def check_resources(self) -> int:
        """How many workers fit at once, summed over the nodes; fails naming every key a worker
        asks too much of on every node."""
        nodes = self.cluster.node_resources()
        demand = {name: amount for name, amount in self.settings.demand().items() if amount > 0}
        short = []
        for name, amount in demand.items():
            most = max((node.get(name, 0.0) for node in nodes), default=0.0)
            if most < amount:
                key = {"GPU": "num_gpus", "CPU": "num_cpus"}.get(name, f"resources.{name}")
                short.append(f"{self.key(key)}: a worker asks for {amount:g} {name}, no node has more than {most:g}")
        if short:
            raise MusicsweepError("; ".join(short))
        return sum(min(math.floor(node.get(name, 0.0) / amount) for name, amount in demand.items()) for node in nodes)

    def validate(self, dry_run: bool = False) -> None:
        """The address answers, with the launcher's Ray version, and some node can hold a worker."""
        self.check_version()
        self.check_resources()

    def shard(self, jobs: list[Job]) -> list[Shard]:
        count = self.settings.workers or max(1, self.check_resources())
        return balanced_shards(jobs, [(self.machine(), self.settings.worker_rate)] * count)

    def machine(self) -> str:
        """What one worker holds, as the estimate's calibration key: `ray:1GPU+4CPU`."""
        held = {name: amount for name, amount in self.settings.demand().items() if amount > 0}
        return "ray:" + "+".join(f"{amount:g}{name}" for name, amount in held.items())

    # ---- launch
    def runtime_env(self, env: dict[str, str]) -> dict:
        """The user's `runtime_env` additions, with the launch's environment contract and this
        musicsweep's code added (the contract's variables win over the user's of the same name)."""
        from musicsweep.backends.ray.code import shipped_modules

        extra = dict(self.settings.runtime_env)
        runtime_env = extra | {"env_vars": {**extra.get("env_vars", {}), **env}}
        if self.settings.ship_code:
            runtime_env["py_modules"] = [*extra.get("py_modules", []), *shipped_modules()]
        return runtime_env

    def submit(self, launch: Launch, shards: list[Shard]) -> RayJobs:
        """Upload the specs, then submit the launch's job (its driver starts the workers)."""
        sweep = launch.sweep
        jobs = [job for shard in shards for job in shard.jobs]  # the shard lists are in the store already
        put_specs(open_store(self.config.store), sweep, jobs, LaunchEnv.from_env(launch.env).specs_sha256)
        settings = self.settings
        plan = LaunchPlan(
            sweep=sweep.name,
            launch_id=launch.launch_id,
            namespace=sweep_namespace(sweep.name),
            workers={shard.worker_id: shard.hourly_cost_usd for shard in shards},
            python=settings.python,
            num_gpus=settings.num_gpus,
            num_cpus=settings.num_cpus,
            resources=dict(settings.resources),
            max_retries=settings.max_retries,
            prepare=list(settings.prepare),
            kill_grace_s=settings.kill_grace_s,
        )
        submission_id = f"musicsweep-{sweep.name}-{launch.launch_id}"
        entrypoint = f"{shlex.quote(settings.python)} -m musicsweep.backends.ray.driver {plan.encode()}"
        metadata_ = {"musicsweep_sweep": sweep.name, "musicsweep_launch": launch.launch_id}
        self.cluster.submit(submission_id, entrypoint, self.runtime_env(launch.env), metadata_)
        state = sweep.read_manifest().state_of(RayJobs)
        workers = {str(shard.worker_id): [job.job_id for job in shard.jobs] for shard in shards}
        state.jobs[launch.launch_id] = RayJob(submission_id, plan.namespace, workers)
        return state

    # ---- following
    def executors(self, sweep: SweepDir, workers: set[WorkerRef]) -> dict[WorkerRef, Executor]:
        """Every worker from one listing of the sweep's actors (and its job's status where it has no actor yet)."""
        actors = self.cluster.actors(sweep_namespace(sweep.name))
        statuses = {
            job_id: self.cluster.job_status(job_id)
            for job_id in sorted({worker.job_id for worker in workers if worker.actor not in actors})
        }
        return {worker: actor_executor(actors.get(worker.actor), statuses.get(worker.job_id)) for worker in workers}

    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        """The cluster first, then the markers, so a worker that ends in between has written its markers."""
        worker_of = manifest.state_of(RayJobs).worker_of_jobs(manifest)
        submitted = {job_id: worker for job_id, worker in worker_of.items() if worker is not None}
        try:
            executors = self.executors(sweep, set(submitted.values()))
        except ClusterUnreachable as error:
            self.unreachable_why[self.settings.address] = str(error)
            return dict.fromkeys(worker_of, JobState.LOST)
        self.unreachable_why.pop(self.settings.address, None)
        executors[None] = WAITING  # a launch whose job is not recorded yet
        markers = list_markers(open_store(self.config.store), sweep.name)
        return job_states(worker_of, executors, markers, manifest.launch_of())

    def control_job(self, sweep_name: str, args: list[str]) -> str:
        """Submit one small job of `control.py`; returns its submission id."""
        command = [self.settings.python, "-m", "musicsweep.backends.ray.control", *args]
        submission_id = f"musicsweep-{sweep_name}-probe-{int(time.time() * 1000)}"
        metadata_ = {"musicsweep_sweep": sweep_name, "musicsweep_control": " ".join(args)}
        env = store_config_to_env(self.config.store)  # the store the job's task probes
        self.cluster.submit(submission_id, shlex.join(command), self.runtime_env(env), metadata_)
        return submission_id

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        """Ask each orphan's driver, through the store, to end its actor (its guard ends the process
        tree): the driver looks every few seconds, where a job of its own would take many to start."""
        worker_of = manifest.state_of(RayJobs).worker_of_jobs(manifest)
        orphans = {worker for job_id in job_ids if (worker := worker_of.get(job_id)) is not None}
        store = open_store(self.config.store)
        for worker in sorted(orphans, key=lambda worker: worker.actor):
            store.put_bytes(sweep.keys.stop_request(worker.launch_id, worker.worker_id), b"orphan\n")

    def probe_store(self, timeout_s: float = PROBE_WAIT_S) -> str:
        """A task on the cluster reads a key the launcher wrote and writes one back (`musicsweep doctor`)."""
        store = open_store(self.config.store)
        key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
        store.put_bytes(key, b"musicsweep doctor\n")
        try:
            job_id = self.control_job("doctor", [key])
            deadline = time.monotonic() + timeout_s
            while (status := self.cluster.job_status(job_id)) not in TERMINAL_JOB_STATES:
                if time.monotonic() > deadline:
                    self.cluster.stop_job(job_id)
                    raise MusicsweepError(f"{self.where}: the store probe did not finish within {timeout_s:.0f}s")
                time.sleep(1.0)
            if status != "SUCCEEDED" or not store.exists(key + SEEN_SUFFIX):
                raise MusicsweepError(
                    f"{self.config.where('store')}: a task on the cluster cannot use {self.config.store.url} "
                    f"(job {job_id}: {status}); use s3:// or a folder every node shares"
                )
        finally:
            for stale in (key, key + SEEN_SUFFIX):
                if store.exists(stale):
                    store.delete(stale)
        return f"a task on the cluster read and wrote {self.config.store.url}"

    def fetch(self, sweep: SweepDir, manifest: Manifest) -> None:
        pull_results(open_store(self.config.store), sweep)

    def cancel(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Stop every launch's job, then wait until none of the sweep's workers is left."""
        job_ids = manifest.state_of(RayJobs).job_ids()
        for job_id in job_ids:
            self.cluster.stop_job(job_id)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            actors = self.cluster.actors(sweep_namespace(sweep.name))
            if all(state == "DEAD" for state in actors.values()) and all(
                self.cluster.job_status(job_id) in (None, *TERMINAL_JOB_STATES) for job_id in job_ids
            ):
                return
            time.sleep(1.0)
        raise MusicsweepError(f"{self.where}: workers of {sweep.name} still alive {CANCEL_WAIT_S:.0f}s after stopping")
