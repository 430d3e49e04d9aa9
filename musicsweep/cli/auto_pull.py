"""`python -m musicsweep.auto_pull [SWEEP]`: poll every job's state, kill orphans, pull results.

Each round first observes (read-only: `sweep.observe`), then reconciles: the backend's own
actions (terminating finished machines, ledgers), orphan kills, `--kill-stalled`, the pull and the
cost report. Every setting comes from the manifest (`sweep.launched`), not from musicsweep.yaml.

Exit status: 0 when every job is done, 1 when some failed, 2 on an error, 3 when `--once` found
jobs still running.
"""

from __future__ import annotations

import argparse
import sys
import time

from musicsweep.backends import get_backend
from musicsweep.backends.base import Backend
from musicsweep.cli.display import SweepProgress, console, print_summary, summarize
from musicsweep.cli.logs import show_library_logs
from musicsweep.cli.polling import schedule_for
from musicsweep.config import Config, load_config
from musicsweep.costs.compare import write_summary_beside_estimate
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir, latest_sweep
from musicsweep.manifest import Manifest
from musicsweep.states import FINISHED_STATES, JobState
from musicsweep.store.pull import merge_cost_report
from musicsweep.store.retry import is_transient, one_line
from musicsweep.store.verify import local_wav_problem
from musicsweep.sweep.launched import launched_config
from musicsweep.sweep.observe import Observation, observe


def clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


class OrphanTracker:
    """A worker alive after all its jobs finished is an orphan only once `grace_s` has passed.

    A worker that has just written its last `.done` is still uploading its log and lifetime
    record; killing it at once would lose them.
    """

    def __init__(self, grace_s: float = 30.0) -> None:
        self.grace_s = grace_s
        self.first_seen: dict[str, float] = {}

    def due(self, orphans: list[str]) -> list[str]:
        now = time.monotonic()
        self.first_seen = {job_id: self.first_seen.get(job_id, now) for job_id in orphans}
        return [job_id for job_id, since in self.first_seen.items() if now - since >= self.grace_s]


def reconcile(
    sweep: SweepDir,
    manifest: Manifest,
    backend: Backend,
    states: dict[str, JobState],
    orphans: OrphanTracker,
    kill_stalled: bool = False,
) -> dict[str, JobState]:
    """Act on one observation: backend actions, orphan (and stalled) kills, then a pull and a fresh cost report."""
    backend.reconcile(sweep, manifest)
    due = orphans.due([job_id for job_id, state in states.items() if state == JobState.DONE_ORPHANS])
    if due:
        console.print(f"killing the orphan worker(s) of {len(due)} finished job(s)")
        backend.kill_orphans(sweep, manifest, due)
    stalled = [job_id for job_id, state in states.items() if state == JobState.STALLED]
    if stalled and kill_stalled:
        console.print(
            f"killing the stalled worker(s) of {len(stalled)} job(s); they are relaunched within max_attempts"
        )
        backend.kill_orphans(sweep, manifest, stalled)
    states = {job_id: JobState.DONE if state == JobState.DONE_ORPHANS else state for job_id, state in states.items()}
    backend.fetch(sweep, manifest)
    merge_cost_report(sweep)
    return states


def poll_once(
    sweep: SweepDir, manifest: Manifest, backend: Backend, orphans: OrphanTracker, config: Config | None = None
) -> dict[str, JobState]:
    """One round: observe, then reconcile."""
    seen = observe(sweep, manifest, backend, config or backend.config)
    return reconcile(sweep, manifest, backend, seen.states, orphans)


class LostTracker:
    """A lost job stays `lost` (not failed) until its host answers, its lease expires (then it may be
    relaunched), or `give_up_after_s` passes; hosts are named once per change with why and until when."""

    def __init__(self, give_up_after_s: float | None) -> None:
        self.give_up_after_s = give_up_after_s
        self.first_lost: dict[str, float] = {}
        self.host_since: dict[str, float] = {}
        self.said: dict[str, str] = {}

    def apply(self, states: dict[str, JobState]) -> dict[str, JobState]:
        now = time.time()
        for job_id, state in states.items():
            if state != JobState.LOST:
                self.first_lost.pop(job_id, None)
                continue
            since = self.first_lost.setdefault(job_id, now)
            if self.give_up_after_s is not None and now - since >= self.give_up_after_s:
                states[job_id] = JobState.FAILED
        return states

    def report(self, seen: Observation, manifest: Manifest) -> None:
        """'host H unreachable since T (why); N jobs lost; lease expires T2', once per change."""
        now = time.time()
        self.host_since = {host: self.host_since.get(host, now) for host in seen.unreachable}
        for host, why in seen.unreachable.items():
            lost = [j for j, s in seen.states.items() if s == JobState.LOST and manifest.jobs[j].host == host]
            expiry = max((seen.lease_expires.get(j, now) for j in lost), default=now)
            line = (
                f"host {host} unreachable since {clock(self.host_since[host])} ({why}); "
                f"{len(lost)} job(s) lost; lease expires {clock(expiry)}"
            )
            if self.said.get(host) != line:
                console.print(line)
                self.said[host] = line
        self.said = {host: line for host, line in self.said.items() if host in seen.unreachable}


def open_launched(name: str | None) -> tuple[SweepDir, Manifest, Config, Backend]:
    """The sweep, its manifest, and the config and backend it was launched with."""
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name or latest_sweep(config.sweeps_dir))
    manifest = sweep.read_manifest()
    config = launched_config(config, manifest)
    return sweep, manifest, config, get_backend(manifest.backend, config)


def record_calibration(config: Config, sweep: SweepDir, manifest: Manifest, paid: dict, machines: dict) -> None:
    """Add the finished sweep to the estimate's history; a cache that cannot be written only warns."""
    if not config.estimate.calibration:
        return
    from musicsweep.costs.calibration import record_sweep
    from musicsweep.store import open_store

    try:
        store = open_store(config.store) if config.estimate.share else None
        keys = record_sweep(sweep, manifest, paid, store, machines)
    except (OSError, MusicsweepError) as error:
        console.print(f"calibration not recorded: {error}")
        return
    if keys:
        console.print(f"calibration: recorded {', '.join(key.describe() for key in keys)}")


def unwhole_clips(sweep: SweepDir, manifest: Manifest, states: dict[str, JobState]) -> dict[str, str]:
    """Done jobs whose local WAV is missing or torn: a `.done` alone never makes a clip."""
    problems = {}
    for job_id, state in states.items():
        if state == JobState.DONE:
            problem = local_wav_problem(sweep.audio / manifest.jobs[job_id].output_name)
            if problem is not None:
                problems[job_id] = problem
    return problems


class OutageReport:
    """Tell the user the store is unreachable, once per outage and then every minute, not every poll."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.since: float | None = None
        self.last_said = 0.0

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        if now - self.last_said >= self.every_s or self.last_said < self.since:
            console.print(f"store unreachable ({now - self.since:.0f} s so far): {one_line(error)}; still polling")
            self.last_said = now

    def recovered(self) -> None:
        if self.since is not None:
            console.print(f"store reachable again after {time.monotonic() - self.since:.0f} s")
            self.since = None


def pull(
    name: str | None,
    once: bool = False,
    interval_s: float | None = None,
    relaunch_failed: bool = False,
    give_up_after_s: float | None = None,
    cleanup: bool = False,
    report: bool = False,
    orphan_grace_s: float = 30.0,
    kill_stalled: bool = False,
) -> int:
    sweep, manifest, config, backend = open_launched(name)
    if cleanup:
        backend.cleanup(sweep, manifest)
    lost = LostTracker(give_up_after_s)
    orphans = OrphanTracker(orphan_grace_s)
    reported: set[str] = set()
    schedule = schedule_for(backend.poll_interval_s, interval_s)
    outage = OutageReport()
    with SweepProgress(sweep.name) as progress:
        while True:
            try:
                seen = observe(sweep, manifest, backend, config, lost.first_lost)
                lost.report(seen, manifest)
                states = lost.apply(reconcile(sweep, manifest, backend, seen.states, orphans, kill_stalled))
            except Exception as error:
                if not is_transient(error):
                    raise
                outage.failed(error)
                if once:
                    return 3
                time.sleep(schedule.next_wait({}))
                continue
            outage.recovered()
            progress.update(states, {job_id: entry.host for job_id, entry in manifest.jobs.items()})
            if relaunch_failed:
                from musicsweep.sweep.relaunch import judge, relaunch_jobs

                verdict = judge(seen, manifest, config, sweep, states, time.time())
                for job_id in sorted(set(verdict.stuck) - reported):
                    console.print(f"job {job_id} ({manifest.jobs[job_id].output_name}): {verdict.stuck[job_id]}")
                    reported.add(job_id)
                if verdict.ready:
                    try:
                        relaunched = relaunch_jobs(config, sweep, backend, verdict.ready)
                    except MusicsweepError as error:  # counted as an attempt; retried after its backoff
                        console.print(f"relaunch failed: {' '.join(str(error).split())}")
                        relaunched = []
                    if relaunched:
                        console.print(f"relaunched {len(relaunched)} job(s): {', '.join(relaunched)}")
                    manifest = sweep.read_manifest()
                elif all(state == JobState.DONE or job_id in verdict.stuck for job_id, state in states.items()):
                    break  # nothing can make progress any more
            elif all(state in FINISHED_STATES for state in states.values()):
                break
            if once:
                return 3
            time.sleep(schedule.next_wait(states))
    for job_id, problem in unwhole_clips(sweep, manifest, states).items():
        console.print(f"{manifest.jobs[job_id].output_name}: {problem}; counted as failed")
        states[job_id] = JobState.FAILED
    return finish(sweep, manifest, backend, states, report, seen)


def finish(
    sweep: SweepDir, manifest: Manifest, backend: Backend, states: dict[str, JobState], report: bool, seen: Observation
) -> int:
    """Release what is left, write the cost summary (and report), print the end summary."""
    backend.cleanup(sweep, manifest)
    failed = sorted(job_id for job_id, state in states.items() if state == JobState.FAILED)
    paid = backend.billing.machine_times(sweep, manifest)
    cost, beside = write_summary_beside_estimate(sweep, manifest, paid)
    record_calibration(backend.config, sweep, manifest, paid, backend.billing.worker_machines(sweep, manifest))
    if report:  # after the cost summary, whose paid total the report shows
        from musicsweep.report.build import write_report

        console.print(f"report: {write_report(sweep)}")
    for line in cost.lines() + (beside.lines() if beside else []):
        console.print(line)
    print_summary(summarize(sweep, manifest, cost))
    console.print(f"results in {sweep.root} (audio/, cost_report.csv, cost_summary.json)")
    if failed:
        console.print(f"{len(failed)} job(s) failed: {', '.join(failed)}")
        for job_id in failed:
            if job_id in seen.reasons:
                console.print(f"  {job_id}: {seen.reasons[job_id]}")
        return 1
    return 0 if all(state == JobState.DONE for state in states.values()) else 1


def main(argv: list[str] | None = None) -> int:
    show_library_logs()
    parser = argparse.ArgumentParser(prog="python -m musicsweep.auto_pull", description=__doc__)
    parser.add_argument("sweep", nargs="?", help="sweep name (default: the latest)")
    parser.add_argument("--once", action="store_true", help="poll once and exit")
    parser.add_argument(
        "--interval", type=float, default=None, help="longest wait between polls (default: 2 s local, 10 s remote)"
    )
    parser.add_argument(
        "--relaunch-failed",
        action="store_true",
        help="resubmit failed jobs, and lost ones once their lease expired, within recovery.max_attempts",
    )
    parser.add_argument("--give-up-after", type=float, default=None, help="seconds before a lost job counts as failed")
    parser.add_argument("--kill-stalled", action="store_true", help="kill workers reported stalled (then relaunched)")
    parser.add_argument("--cleanup", action="store_true", help="terminate every paid instance/pod of the sweep")
    parser.add_argument("--report", action="store_true", help="write the HTML listening report at the end")
    parser.add_argument(
        "--orphan-grace", type=float, default=30.0, help="seconds a finished worker may live on before it is killed"
    )
    args = parser.parse_args(argv)
    try:
        return pull(
            args.sweep,
            once=args.once,
            interval_s=args.interval,
            relaunch_failed=args.relaunch_failed,
            give_up_after_s=args.give_up_after,
            cleanup=args.cleanup,
            report=args.report,
            orphan_grace_s=args.orphan_grace,
            kill_stalled=args.kill_stalled,
        )
    except MusicsweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
