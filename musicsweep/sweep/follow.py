"""Follow a launched sweep to its end: poll every job's state, act on it, relaunch, settle the bill.

Each round first observes (read-only: `sweep.observe`), then acts (`act_on`): the backend's own
`reconcile` (terminating finished machines, ledgers), orphan kills, stalled kills, the pull and the
cost report. `follow` yields what happened as data (`Round`, `Notice`, `Settled`); the command
that drives it (`cli/pull.py`, `musicsweep pull` = `python -m musicsweep.auto_pull`) only prints.
Every setting comes from the manifest (`sweep.launched`), not from musicsweep.yaml.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from musicsweep.backends.base import Backend
from musicsweep.config import Config
from musicsweep.costs.compare import EstimateBeside, write_summary_beside_estimate
from musicsweep.costs.rows import update_cost_report
from musicsweep.costs.summary import CostSummary
from musicsweep.costs.throughput import rate_lines, worker_rates
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir
from musicsweep.manifest import Manifest
from musicsweep.states import FINISHED_STATES, JobState
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.retry import is_transient
from musicsweep.store.sightings import Sightings
from musicsweep.store.verify import local_wav_problem
from musicsweep.sweep.lock import launch_lock
from musicsweep.sweep.observe import Observation, observe
from musicsweep.sweep.polling import schedule_for
from musicsweep.sweep.relaunch import judge, relaunch_jobs
from musicsweep.sweep.speclists import prune_spec_lists
from musicsweep.sweep.takers import live_takers
from musicsweep.sweep.trackers import LostTracker, OrphanTracker, OutageTracker


@dataclass(frozen=True)
class FollowOptions:
    once: bool = False  # one round; stop without `Settled` while jobs are unfinished
    interval_s: float | None = None  # the longest wait between polls (default: the backend's)
    relaunch_failed: bool = False
    give_up_after_s: float | None = None  # a lost job counts as failed after this long
    cleanup: bool = False  # terminate every paid instance/pod of the sweep first
    orphan_grace_s: float = 30.0
    kill_stalled: bool = False


@dataclass(frozen=True)
class Notice:
    """One line worth telling the user."""

    line: str


@dataclass(frozen=True)
class Round:
    """Every job's state after one round, the host each job runs on, and a line per worker on its
    throughput and the shards it took clips from (`costs/throughput.py`)."""

    states: dict[str, JobState]
    hosts: dict[str, str | None]
    throughput: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Settled:
    """The sweep ended: what failed (and why, where known), the bill, and the estimate beside it."""

    manifest: Manifest
    states: dict[str, JobState]
    failed: dict[str, str | None]
    cost: CostSummary
    beside: EstimateBeside | None = None
    calibration: list[str] = field(default_factory=list)

    @property
    def all_done(self) -> bool:
        return all(state == JobState.DONE for state in self.states.values())


def act_on(
    sweep: SweepDir,
    manifest: Manifest,
    backend: Backend,
    states: dict[str, JobState],
    orphans: OrphanTracker,
    kill_stalled: bool = False,
    taking: Callable[[], set[tuple[str, int]]] | None = None,
) -> tuple[dict[str, JobState], list[str], list[dict[str, str]]]:
    """Act on one observation: backend actions, orphan (and stalled) kills, then a pull and a fresh
    cost report. Returns the states with `done_orphans` read as `done`, what was done, and the
    report's rows. `taking` names the (launch, worker) pairs still taking clips of the sweep's other
    shards (`sweep.takers`): a worker whose own shard is done but which works for the sweep is no
    orphan."""
    said = []
    backend.reconcile(sweep, manifest)
    due = orphans.due([job_id for job_id, state in states.items() if state == JobState.DONE_ORPHANS])
    if due and taking is not None:
        busy = taking()
        due = [job_id for job_id in due if (manifest.jobs[job_id].launch, manifest.jobs[job_id].worker) not in busy]
    if due:
        said.append(f"killing the orphan worker(s) of {len(due)} finished job(s)")
        backend.kill_orphans(sweep, manifest, due)
    stalled = [job_id for job_id, state in states.items() if state == JobState.STALLED]
    if stalled and kill_stalled:
        said.append(f"killing the stalled worker(s) of {len(stalled)} job(s); they are relaunched within max_attempts")
        backend.kill_orphans(sweep, manifest, stalled)
    states = {job_id: JobState.DONE if state == JobState.DONE_ORPHANS else state for job_id, state in states.items()}
    backend.fetch(sweep, manifest)
    return states, said, update_cost_report(sweep)


def throughput_lines(manifest: Manifest, rows: list[dict[str, str]]) -> list[str]:
    """Each worker's throughput and the other shards it took clips from, from the cost rows."""
    owners = {job_id: (entry.launch, entry.worker) for job_id, entry in manifest.jobs.items()}
    hosts = {
        (entry.launch or "", entry.worker): entry.host or "-" for entry in manifest.jobs.values() if entry.assigned
    }
    return rate_lines(worker_rates(rows, owners), hosts)


def poll_once(
    sweep: SweepDir, manifest: Manifest, backend: Backend, orphans: OrphanTracker, config: Config | None = None
) -> dict[str, JobState]:
    """One round: observe, then act."""
    seen = observe(sweep, manifest, backend, config or backend.config)
    return act_on(sweep, manifest, backend, seen.states, orphans)[0]


def unwhole_clips(sweep: SweepDir, manifest: Manifest, states: dict[str, JobState]) -> dict[str, str]:
    """Done jobs whose local WAV is missing or torn: a `.done` alone never makes a clip."""
    problems = {}
    for job_id, state in states.items():
        if state == JobState.DONE:
            problem = local_wav_problem(sweep.clip(manifest.jobs[job_id].output_name))
            if problem is not None:
                problems[job_id] = problem
    return problems


def follow(
    sweep: SweepDir, manifest: Manifest, config: Config, backend: Backend, options: FollowOptions
) -> Iterator[Round | Notice | Settled]:
    """Poll until every job is finished (or, relaunching, until nothing can make progress), then settle.

    Ends without `Settled` when `options.once` stops it while jobs are unfinished."""
    if options.cleanup:
        backend.cleanup(sweep, manifest)
    lost = LostTracker(options.give_up_after_s)
    orphans = OrphanTracker(options.orphan_grace_s)
    outage = OutageTracker()
    told_stuck: set[str] = set()
    refused: dict[str, str] = {}  # jobs whose spec no longer matches its digest: never relaunched here
    told_left: dict[str, str] = {}
    schedule = schedule_for(backend.poll_interval_s, options.interval_s)
    written = manifest_written(sweep)
    sightings = Sightings()  # what each round saw of heartbeats and claims: their ages on our own clock
    store = open_store(config.store)
    lease_s = config.recovery.lease_s
    taking = lambda: {(taker.launch, taker.worker) for taker in live_takers(store, sweep, sightings, lease_s)}  # noqa: E731
    while True:
        if manifest_written(sweep) != written:  # another command launched: follow its jobs too
            manifest, written = sweep.read_manifest(), manifest_written(sweep)
        try:
            seen = observe(sweep, manifest, backend, config, lost.first_lost, sightings=sightings)
            yield from map(Notice, lost.report(seen, manifest))
            states, acted, rows = act_on(sweep, manifest, backend, seen.states, orphans, options.kill_stalled, taking)
            states = lost.apply(states)
        except Exception as error:
            if not is_transient(error):
                raise
            yield from map(Notice, outage.failed(error))
            if options.once:
                return
            time.sleep(schedule.next_wait({}))
            continue
        yield from map(Notice, acted + outage.recovered())
        hosts = {job_id: entry.host for job_id, entry in manifest.jobs.items()}
        yield Round(states, hosts, throughput_lines(manifest, rows))
        if options.relaunch_failed:
            verdict = judge(seen, manifest, config, sweep, states, time.time(), sightings, backend.store_per_host)
            for job_id in sorted(set(verdict.stuck) - told_stuck):
                yield Notice(f"job {job_id} ({manifest.jobs[job_id].output_name}): {verdict.stuck[job_id]}")
                told_stuck.add(job_id)
            if verdict.left and verdict.left != told_left:
                yield Notice(f"not relaunched, left to the sweep's live workers: {left_summary(verdict.left)}")
            told_left = verdict.left
            ready = [job_id for job_id in verdict.ready if job_id not in refused]
            never = verdict.stuck.keys() | refused.keys()
            if ready:
                yield from map(Notice, try_relaunch(config, sweep, backend, ready, manifest, refused))
                manifest, written = sweep.read_manifest(), manifest_written(sweep)
            elif all(state == JobState.DONE or job_id in never for job_id, state in states.items()):
                break  # nothing can make progress any more
        elif all(state in FINISHED_STATES for state in states.values()):
            break
        if options.once:
            return
        time.sleep(schedule.next_wait(states))
    for job_id, problem in unwhole_clips(sweep, manifest, states).items():
        yield Notice(f"{manifest.jobs[job_id].output_name}: {problem}; counted as failed")
        states[job_id] = JobState.FAILED
    yield from map(Notice, tidy_spec_lists(sweep, store, manifest, seen))
    yield settle(sweep, manifest, backend, states, seen)


def tidy_spec_lists(sweep: SweepDir, store: Store, manifest: Manifest, seen: Observation) -> list[str]:
    """At the end of a follow, remove the spec lists no worker can still need (`sweep.speclists`):
    all but the latest when the last poll saw every job finished and nobody launched since, else
    those of launches no job's latest attempt is. A store outage only skips it, with a line."""
    ended = all(state in (JobState.DONE, JobState.DONE_ORPHANS, JobState.FAILED) for state in seen.states.values())
    try:
        with launch_lock(sweep, "the spec list cleanup"):
            now = sweep.read_manifest()
            prune_spec_lists(sweep, store, now, only_latest=ended and now.launch_ids() == manifest.launch_ids())
    except Exception as error:
        if not is_transient(error):
            raise
        return [f"spec lists not cleaned up: {' '.join(str(error).split())}"]
    return []


def left_summary(left: dict[str, str]) -> str:
    """'3 job(s): worker 0 of launch L on h can take it', one phrase per distinct reason."""
    return "; ".join(f"{count} job(s): {reason}" for reason, count in sorted(Counter(left.values()).items()))


def manifest_written(sweep: SweepDir) -> tuple[int, int]:
    """When the manifest was last replaced (each write is a new file): re-read it only then."""
    status = sweep.manifest.stat()
    return status.st_ino, status.st_mtime_ns


def try_relaunch(
    config: Config, sweep: SweepDir, backend: Backend, job_ids: list[str], judged_by: Manifest, refused: dict[str, str]
) -> list[str]:
    """Relaunch `job_ids`; a failure counts as an attempt and is retried after its backoff. Jobs
    whose spec is refused are added to `refused` (never tried again by this follow), in one line."""
    try:
        relaunched = relaunch_jobs(config, sweep, backend, job_ids, judged_by)
    except MusicsweepError as error:
        return [f"relaunch failed: {' '.join(str(error).split())}"]
    refused |= relaunched.refused
    lines = []
    if relaunched.started:
        lines.append(f"relaunched {len(relaunched.started)} job(s): {', '.join(relaunched.started)}")
    if relaunched.refused:
        first = next(iter(relaunched.refused.values()))
        lines.append(f"not relaunched, spec refused for {len(relaunched.refused)} job(s): {first}")
    return lines


def settle(
    sweep: SweepDir, manifest: Manifest, backend: Backend, states: dict[str, JobState], seen: Observation
) -> Settled:
    """Release what is left, write the cost summary and add the sweep to the estimate's history."""
    backend.cleanup(sweep, manifest)
    paid = backend.billing.machine_times(sweep, manifest)
    cost, beside = write_summary_beside_estimate(sweep, manifest, paid)
    calibration = record_calibration(
        backend.config, sweep, manifest, paid, backend.billing.worker_machines(sweep, manifest)
    )
    failed = {job_id: seen.reasons.get(job_id) for job_id, state in sorted(states.items()) if state == JobState.FAILED}
    return Settled(manifest, states, failed, cost, beside, calibration)


def record_calibration(config: Config, sweep: SweepDir, manifest: Manifest, paid: dict, machines: dict) -> list[str]:
    """Add the finished sweep to the estimate's history; a cache that cannot be written only warns."""
    if not config.estimate.calibration:
        return []
    from musicsweep.costs.calibration import record_sweep
    from musicsweep.store import open_store

    try:
        store = open_store(config.store) if config.estimate.share else None
        keys = record_sweep(sweep, manifest, paid, store, machines)
    except (OSError, MusicsweepError) as error:
        return [f"calibration not recorded: {error}"]
    return [f"calibration: recorded {', '.join(key.describe() for key in keys)}"] if keys else []
