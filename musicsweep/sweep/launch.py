"""Launch a plan: one submission of a sweep's jobs to a backend, with its id and `LaunchRecord`.

Under the sweep's launch lock (`sweep.lock`) a launch drops what another launch started meanwhile,
writes the specs, their digests (`digests`: the list's own digest goes into the workers'
environment) and the manifest, then asks the backend to start the workers; a backend that fails
leaves its jobs `failed` with the launch's error, so a re-run or a relaunch starts them. The
launch record says `submitted: false` from that manifest write until the backend has answered:
a launcher killed in between leaves a launch that `sweep.observe` reads as dead once its lock is
free, so running the same command again starts what it never started. A launch that went through
removes the spec lists no worker can still need (`sweep.speclists`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import time

from musicsweep.atomic import atomic_write_bytes
from musicsweep.backends.base import Launch, LaunchFailed, Shard
from musicsweep.config import Config
from musicsweep.contract import TEST_LAUNCHER_KILL_AT, sweep_environment
from musicsweep.costs.estimate import estimate_for
from musicsweep.digests import sha256_hex, spec_list_text
from musicsweep.errors import MusicsweepError
from musicsweep.layout import PID_SUFFIX, SweepDir
from musicsweep.manifest import JobEntry, LaunchRecord, Manifest
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.sweep.inputs import ship_inputs
from musicsweep.sweep.launched import record_settings
from musicsweep.sweep.lock import launch_lock
from musicsweep.sweep.plan import Plan, finished_in_store, running_jobs
from musicsweep.sweep.speclists import prune_spec_lists
from musicsweep.sweep.variants import canonical_json


def new_launch_id() -> str:
    """`YYYYmmddTHHMMSS-xxxxxx`: sorts by time, and two launches in one second still differ."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def launcher_kill_point(phase: str) -> None:
    """SIGKILL this launcher at `phase` when a test asked for it (`contract.TEST_LAUNCHER_KILL_AT`)."""
    if os.environ.get(TEST_LAUNCHER_KILL_AT) == phase:
        os.kill(os.getpid(), signal.SIGKILL)


def without_started_meanwhile(plan: Plan, config: Config) -> Plan:
    """The plan less the jobs another launch started (or finished) since it was made: the caller's
    `plan.seen_launches` are those of the manifest it judged by, so a launch that happened while
    it waited for the lock (or before) is never missed."""
    sweep = plan.sweep
    manifest = sweep.read_manifest_if_any()
    if not plan.shards or (manifest.launch_ids() if manifest else ()) == plan.seen_launches:
        return plan
    busy = running_jobs(plan.backend, sweep, manifest, config)
    taken = busy | finished_in_store(open_store(config.store), plan.to_run, sweep)
    keep = [job for job in plan.to_run if job.job_id not in taken]
    moved = [job for job in plan.to_run if job.job_id in taken]
    if not moved:
        return plan
    print(f"another launch of sweep {sweep.name} started {len(moved)} of these job(s) meanwhile; launching {len(keep)}")
    shards = plan.backend.shard(keep) if keep else []
    return dataclasses.replace(plan, shards=shards, running=plan.running + moved, estimate=None)


def launch(plan: Plan, config: Config, record_empty: bool = True) -> Plan:
    """Under the sweep's launch lock: drop what another launch started meanwhile, write specs,
    manifest and scripts, then start the workers. Returns the plan as launched. A relaunch left
    with nothing to start (`record_empty=False`) records no launch."""
    with launch_lock(plan.sweep):
        plan = without_started_meanwhile(plan, config)
        if plan.shards or record_empty:
            manifest = launch_locked(plan, config)
            prune_spec_lists(plan.sweep, open_store(config.store), manifest)
    return plan


def launch_locked(plan: Plan, config: Config) -> Manifest:
    """The launch itself (`launch`); returns the manifest as written."""
    sweep = plan.sweep
    previous = sweep.read_manifest_if_any()
    launch_id = new_launch_id()
    manifest = previous or Manifest(sweep=sweep.name, created=time.time())
    record_settings(manifest, config)
    store = open_store(config.store)
    ship_inputs(store, sweep.keys, plan.to_run)
    present = sweep.job_files()
    digests = sweep.write_specs(plan.jobs, present)
    for job in plan.jobs:
        known = manifest.jobs.get(job.job_id)
        entry = JobEntry.of(job, json.loads(canonical_json(job.variant)))
        if known is not None:  # where and how often it ran so far stays
            for name in ("worker", "host", "launch", "attempts", "launched_at", "error"):
                setattr(entry, name, getattr(known, name))
        entry.spec_sha256 = digests[job.job_id]
        manifest.jobs[job.job_id] = entry
    specs_sha256 = write_spec_list(sweep, manifest)
    now = time.time()
    for shard in plan.shards:
        for job in shard.jobs:
            entry = manifest.jobs[job.job_id]
            entry.worker, entry.host, entry.launch = shard.worker_id, shard.host, launch_id
            entry.attempts, entry.launched_at, entry.error = entry.attempts + 1, now, None
            if f"{job.job_id}{PID_SUFFIX}" in present:  # an earlier attempt's
                sweep.job(job).pid.unlink(missing_ok=True)
    if plan.estimate is None and plan.shards:  # a relaunch shards without make_plan
        plan.estimate = estimate_for(config, plan.backend.name, plan.backend.billing, plan.shards, store)
    estimate = plan.estimate.to_dict() if plan.estimate else None
    record = LaunchRecord(
        launch_id, now, len(plan.to_run), estimate, submitted=not plan.shards, specs_sha256=specs_sha256
    )
    manifest.launches.append(record)
    sweep.write_manifest(manifest)
    if not plan.shards:
        return manifest
    write_shard_lists(store, sweep, launch_id, plan.shards)
    env = sweep_environment(config, launch_id, previous is not None, specs_sha256)
    launcher_kill_point("submit")
    try:
        state = plan.backend.submit(Launch(sweep, launch_id, previous is not None, env), plan.shards)
    except MusicsweepError as error:
        record.submitted = True
        record_launch_error(sweep, manifest, plan.shards, record, error)
        raise
    launcher_kill_point("submitted")
    record.submitted = True
    manifest.keep_state(state)
    sweep.write_manifest(manifest)
    return manifest


def write_spec_list(sweep: SweepDir, manifest: Manifest) -> str:
    """The launch's list of every spec digest of the sweep (so a worker may load any of its specs,
    whichever launch wrote it); returns the list's own digest, for the workers' environment."""
    digests = {job_id: entry.spec_sha256 for job_id, entry in manifest.jobs.items() if entry.spec_sha256}
    data = spec_list_text(digests)
    digest = sha256_hex(data)
    atomic_write_bytes(sweep.spec_list(digest), data, fsync=False)  # the manifest, fsynced next, commits it
    return digest


def write_shard_lists(store: Store, sweep: SweepDir, launch_id: str, shards: list[Shard]) -> None:
    """Each worker's job ids in the store: the sweep's job list for workers that take free clips of
    other shards (`worker/pool.py`), and the work an EC2 instance fetches."""
    for shard in shards:
        store.put_json(sweep.keys.shard(launch_id, shard.worker_id), {"jobs": [job.job_id for job in shard.jobs]})


def record_launch_error(
    sweep: SweepDir, manifest: Manifest, shards: list[Shard], record: LaunchRecord, error: MusicsweepError
) -> None:
    """The jobs whose workers never started read `failed` with the launch's error, so a re-run or
    `--relaunch-failed` can start them (they would otherwise stay pending for ever)."""
    line = " ".join(str(error).split())
    record.error = line
    workers = error.workers if isinstance(error, LaunchFailed) else {shard.worker_id for shard in shards}
    for shard in shards:
        if shard.worker_id in workers:
            for job in shard.jobs:
                manifest.jobs[job.job_id].error = f"launch {record.id} failed: {line}"
    if isinstance(error, LaunchFailed):
        manifest.keep_state(error.state)
    sweep.write_manifest(manifest)
