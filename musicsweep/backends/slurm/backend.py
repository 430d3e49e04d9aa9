"""SLURM backend: one `sbatch --array=0-(N-1)%P` per launch, requeued on preemption.

Submission runs on the cluster's login node: this machine, or one reached through the SSH host
entry `backends.slurm.login` (the SSH backend's deploy/setup/pull steps push the code, specs and
scripts to `{remote_dir}` and bring results back). The sweep folder must be on a filesystem the
compute nodes share (home or project storage, as on most clusters): each array task runs the
common worker script over its shard, with that folder as its job dir, and writes through the
configured store. `--signal=B:USR2@LEAD` asks the batch shell to stop; the template forwards it to
the worker, which finishes its batch and exits EXIT_STOPPED, and the epilogue then requeues the
task (up to `max_requeues` times), as it does a worker that gave up on an unreachable store
(EXIT_STORE_UNREACHABLE). A requeued task skips the clips already in the store.

Status costs one `squeue` call for every array of the sweep, plus one listing of the markers.

Modules: `settings` (musicsweep.yaml), `cluster` (where sbatch runs, and how the compute nodes
see the sweep), `scripts` (the bash SLURM runs), `queue` (squeue's answer), `state` (what the
manifest keeps).
"""

from __future__ import annotations

import math
import os
import shlex
import time
from pathlib import Path

from musicsweep.backends.base import Backend, Launch, Shard, balanced_shards
from musicsweep.backends.slurm.cluster import Cluster
from musicsweep.backends.slurm.queue import (
    ACTIVE_STATES,
    QUEUED_STATES,
    named_arrays_command,
    one_line,
    parse_named_arrays,
    parse_squeue,
    squeue_command,
    task_executor,
)
from musicsweep.backends.slurm.scripts import ARRAY_SCRIPT, task_epilogue, task_prologue
from musicsweep.backends.slurm.settings import SlurmConfig, check_settings, time_limit_s
from musicsweep.backends.slurm.state import SlurmArray, SlurmArrays, tasks_of_launch
from musicsweep.config import Config, typed_section
from musicsweep.contract import worker_environment
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import (
    MARKERS_DIR,
    JobPaths,
    SlurmLaunchPaths,
    SweepDir,
    WorkerPaths,
    list_markers,
)
from musicsweep.manifest import Manifest
from musicsweep.remote.hosts import check_host
from musicsweep.remote.ssh import HostUnreachable
from musicsweep.scripts import WorkerScript, write_script
from musicsweep.states import JobState, job_states, marker_state
from musicsweep.store import open_store
from musicsweep.store.pull import pull_results

CANCEL_WAIT_S = 60.0


class SlurmBackend(Backend):
    name = "slurm"
    queues = True
    pending_is_seen = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.where = config.where("backends.slurm")
        self.settings = typed_section(SlurmConfig, config.backend_section("slurm"), self.where)
        check_settings(self.settings, config)
        self.cluster = Cluster(config, self.settings, self.where)
        self.login = self.settings.login  # the login node's host entry, for `musicsweep doctor`

    def key(self, name: str) -> str:
        """`FILE: key 'backends.slurm.NAME'`, for error messages."""
        return self.config.where(f"backends.slurm.{name}")

    def validate(self, dry_run: bool = False) -> None:
        """Let sbatch judge the settings (`--test-only` submits nothing), then check the USR2 lead."""
        if self.login is not None:
            self.login.check(self.key("login"))
            missing = [name for name in self.login.env if name not in os.environ]
            if missing:
                raise MusicsweepError(f"{self.key('login.env')}: {missing[0]} is not set in this environment")
            check_host(self.login, write=not dry_run)
        test_script = f"#!/usr/bin/env bash\n{self.settings.header_lines()}\ntrue\n"
        result = self.cluster.run(["sbatch", "--test-only", *self.settings.sbatch_options()], stdin=test_script)
        if result.returncode != 0:
            message = one_line(result.stderr or result.stdout)
            raise MusicsweepError(f"{self.culprit(message)}: sbatch rejected the settings: {message}")
        if self.settings.time is None:
            return
        limit = time_limit_s(self.settings.time)
        if limit is None:
            raise MusicsweepError(f"{self.key('time')}: cannot read time limit {self.settings.time!r}")
        if limit <= self.settings.signal_lead_s:
            raise MusicsweepError(
                f"{self.key('time')}: {self.settings.time!r} is not longer than signal_lead_s "
                f"({self.settings.signal_lead_s} s): every task would be stopped as it starts"
            )

    def culprit(self, message: str) -> str:
        """Name the key an sbatch error is about, when the message says which."""
        key = self.settings.culprit(message)
        return self.key(key) if key is not None else self.where

    @property
    def host(self) -> str:
        """The host every shard names: the partition (the cluster places the tasks)."""
        return f"slurm:{self.settings.partition or 'default'}"

    def shard(self, jobs: list[Job]) -> list[Shard]:
        count = self.settings.shards or math.ceil(len(jobs) / self.settings.clips_per_shard)
        return balanced_shards(jobs, [(self.host, self.settings.hourly_cost_usd)] * max(1, count))

    def worker_script(self, launch: Launch, shard: Shard, num_workers: int) -> WorkerScript:
        job_dir = self.cluster.job_dir(launch.sweep)
        store_dir = self.cluster.store_dir()
        env = worker_environment(launch.env, job_dir, shard.worker_id, num_workers, shard.hourly_cost_usd, store_dir)
        return WorkerScript(
            sweep=launch.sweep.name,
            worker_id=shard.worker_id,
            num_workers=num_workers,
            cwd=self.cluster.code_dir(),
            log=str(WorkerPaths(Path(job_dir), launch.sweep.name, shard.worker_id, launch.launch_id).log),
            specs=[str(JobPaths.of(job, job_dir).spec) for job in shard.jobs],
            python=self.cluster.python(),
            env=env,
            prologue=task_prologue(self.settings.prepare),
            epilogue=task_epilogue(self.settings.max_requeues),
        )

    def submit(self, launch: Launch, shards: list[Shard]) -> SlurmArrays:
        """Write one worker script per task (in a per-launch folder, so a relaunch never rewrites a
        queued task's script) and the array script, then submit the whole launch with one sbatch."""
        sweep = launch.sweep
        here = SlurmLaunchPaths(str(sweep.root), launch.launch_id)
        there = SlurmLaunchPaths(self.cluster.job_dir(sweep), launch.launch_id)
        for shard in shards:
            script = self.worker_script(launch, shard, len(shards))
            write_script(Path(here.worker_script(shard.worker_id)), script.render())
        header = ARRAY_SCRIPT.format(
            sweep=sweep.name,
            launch_id=launch.launch_id,
            sbatch_lines=self.settings.header_lines(),
            folder=shlex.quote(there.folder),
        )
        write_script(Path(here.array_script), header)
        self.cluster.prepare(sweep)
        command = [
            "sbatch",
            "--parsable",
            f"--array=0-{len(shards) - 1}%{self.settings.array_parallelism}",
            f"--signal=B:USR2@{self.settings.signal_lead_s}",
            "--requeue",
            f"--job-name={self.array_name(sweep.name, launch.launch_id)}",
            f"--output={there.task_logs}",
            *self.settings.sbatch_options(),
            there.array_script,
        ]
        result = self.cluster.run(command)
        if result.returncode != 0:
            raise MusicsweepError(f"{self.where}: sbatch failed: {one_line(result.stderr or result.stdout)}")
        array_job_id = result.stdout.strip().splitlines()[-1].split(";")[0]
        state = sweep.read_manifest().state_of(SlurmArrays)
        tasks = {str(shard.worker_id): [job.job_id for job in shard.jobs] for shard in shards}
        state.arrays[launch.launch_id] = SlurmArray(array_job_id, tasks)
        return state

    def array_name(self, sweep: str, launch_id: str) -> str:
        """A launch's job name, `job_name` (default `musicsweep-SWEEP`) and the launch id: how a poll
        finds an array whose launcher died before recording its id (`arrays`)."""
        return f"{self.settings.job_name or f'musicsweep-{sweep}'}-{launch_id}"

    def arrays(self, manifest: Manifest) -> SlurmArrays:
        """The sweep's arrays: those the manifest records, and those of launches never marked
        submitted (a launcher killed after sbatch answered), found by job name in one squeue call,
        so their tasks are polled, cancelled and never started twice. Read-only."""
        return self.find_arrays(manifest)[0]

    def find_arrays(self, manifest: Manifest) -> tuple[SlurmArrays, set[str]]:
        """`arrays`, and the unsubmitted launches whose array could not be looked for (squeue did
        not answer): whether SLURM runs their tasks is unknown, so nothing may start them again."""
        state = manifest.state_of(SlurmArrays)
        names = {
            self.array_name(manifest.sweep, record.id): record.id
            for record in manifest.launches
            if not record.submitted and record.id not in state.arrays
        }
        if not names:
            return state, set()
        try:
            found = parse_named_arrays(self.cluster.run(named_arrays_command(sorted(names))))
        except HostUnreachable as error:
            found, why = None, str(error)
        else:
            why = "squeue did not answer"
        if found is None:
            self.unreachable_why[self.host] = f"{why}: the arrays of launches never marked submitted are unknown"
            return state, set(names.values())
        for name, array_job_id in found.items():
            launch_id = names.get(name)
            if launch_id is not None:
                state.arrays[launch_id] = SlurmArray(array_job_id, tasks_of_launch(manifest, launch_id))
        return state, set()

    def task_states(self, manifest: Manifest) -> dict[str, str] | None:
        """Every task of every array of the sweep, in one squeue call; None if SLURM does not answer."""
        return self.queue(self.arrays(manifest).array_ids())

    def queue(self, array_ids: list[str]) -> dict[str, str] | None:
        """These arrays' tasks, in one squeue call; None if SLURM does not answer."""
        if not array_ids:
            return {}
        try:
            return parse_squeue(self.cluster.run(squeue_command(array_ids)))
        except HostUnreachable:
            return None

    def queue_and_markers(self, sweep: SweepDir, arrays: SlurmArrays) -> tuple[dict[str, str] | None, set[str] | None]:
        """squeue first, then the marker names, so a task that ends in between has already written
        its markers; through a login node with the store on its disk, both in one round trip."""
        array_ids = arrays.array_ids()
        if not self.cluster.store_on_cluster_disk:
            return self.queue(array_ids), list_markers(open_store(self.config.store), sweep.name)
        listing = ["ls", "-1", f"{self.cluster.job_dir(sweep)}/{MARKERS_DIR}"]
        try:
            squeue, markers = self.cluster.run_all([squeue_command(array_ids), listing])
        except HostUnreachable:
            return None, None
        return parse_squeue(squeue), set(markers.stdout.split())

    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        """States from the markers and one squeue call for the whole sweep. The jobs of a launch
        whose array could not be looked for are lost on an unreachable cluster, never unseen: a
        relaunch would start a second array beside one that may be running."""
        self.unreachable_why.pop(self.host, None)
        arrays, unknown = self.find_arrays(manifest)
        tasks = arrays.task_of_jobs(manifest)
        queue, markers = self.queue_and_markers(sweep, arrays)
        unknown_jobs = [job_id for job_id, entry in manifest.jobs.items() if entry.launch in unknown]
        if markers is None:
            return dict.fromkeys([*tasks, *unknown_jobs], JobState.LOST)
        executors = {task: task_executor(queue, task) for task in set(tasks.values())}
        states = job_states(tasks, executors, markers, manifest.launch_of())
        for job_id in unknown_jobs:
            states[job_id] = marker_state(job_id, manifest.jobs[job_id].launch, markers) or JobState.LOST
        return states

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        """Cancel the tasks whose clips are all finished but which are still running."""
        tasks = self.arrays(manifest).task_of_jobs(manifest)
        orphan_tasks = sorted({tasks[job_id] for job_id in job_ids if job_id in tasks})
        if orphan_tasks:
            self.cluster.run(["scancel", *orphan_tasks])

    def fetch(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Pull the store into the sweep folder; through a login node, rsync the cluster-side results
        (or, with an S3 store, the logs) first."""
        store = open_store(self.config.store)
        self.cluster.pull(sweep, store)
        pull_results(store, sweep)

    def cancel(self, sweep: SweepDir, manifest: Manifest) -> None:
        """`scancel` every array of the sweep, then wait until no task holds a node any more."""
        arrays, unknown = self.find_arrays(manifest)
        if unknown:
            raise MusicsweepError(
                f"{self.where}: squeue did not answer, so the arrays of launch(es) {', '.join(sorted(unknown))} "
                "(never marked submitted) cannot be found to cancel: run cancel again"
            )
        array_ids = arrays.array_ids()
        if not array_ids:
            return
        result = self.cluster.run(["scancel", *array_ids])
        if result.returncode != 0:
            raise MusicsweepError(f"{self.where}: scancel failed: {one_line(result.stderr)}")
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            states = self.queue(array_ids)
            if states is not None and not set(states.values()) & (QUEUED_STATES | ACTIVE_STATES):
                return
            time.sleep(0.5)
        raise MusicsweepError(
            f"{self.where}: tasks of {', '.join(array_ids)} still running {CANCEL_WAIT_S:.0f}s after scancel"
        )
