"""Human output: plan tables, job-state tables, live progress and the end summary.

On a terminal these are rich tables and a live display; otherwise (CI, logs, pipes) they are plain
aligned lines, so a log stays readable and greppable.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from musicsweep.atomic import atomic_write_text
from musicsweep.costs.estimate import PARTS
from musicsweep.layout import COSTS_DIR, WORKERS_DIR
from musicsweep.states import JobState
from musicsweep.terminal import console, print_plain, render_table

if TYPE_CHECKING:
    from musicsweep.costs.estimate import Estimate
    from musicsweep.costs.summary import CostSummary
    from musicsweep.layout import SweepDir
    from musicsweep.manifest import Manifest
    from musicsweep.sweep.plan import Plan

STATE_COLUMNS = (JobState.PENDING, JobState.RUNNING, JobState.STALLED, JobState.DONE, JobState.FAILED, JobState.LOST)


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_usd(value: float) -> str:
    """Dollars with enough decimals that a cheap clip does not show as $0.0000."""
    return f"${value:.2f}" if value >= 1 else f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


PLAN_ROWS_SHOWN = 100  # a dry run of more clips writes its per-clip plan to a file instead
PLAN_HEADERS = ("job", "prompt", "duration_s", "model", "seed", "output", "store", "worker", "est_time", "est_cost")


def plan_rows(plan: Plan) -> list[list[str]]:
    """One row per clip: where it runs (or why it does not), its estimated time and cost."""
    skipped = {job.job_id for job in plan.skipped}
    running = {job.job_id for job in plan.running}
    where = {
        job.job_id: (f"{shard.host}#{shard.worker_id}", shard.hourly_cost_usd)
        for shard in plan.shards
        for job in shard.jobs
    }
    rows = []
    for job in plan.jobs:
        job_id = job.job_id
        estimate = plan.job_estimate_s.get(job_id)
        action = "skip (in store)" if job_id in skipped else "running" if job_id in running else "generate"
        worker, rate = where.get(job_id, ("-", 0.0))
        rows.append(
            [
                job_id,
                job.prompt[:40],
                f"{job.duration_s:g}",
                job.model,
                str(job.seed),
                job.output_name,
                action,
                worker,
                "-" if estimate is None else format_duration(estimate),
                "-" if estimate is None else format_usd(estimate * rate / 3600),
            ]
        )
    return rows


def write_plan_file(plan: Plan, rows: list[list[str]]) -> Path:
    """The per-clip plan as tab-separated lines with a header, in the sweep folder (`plan.tsv`)."""
    lines = ["\t".join(row) for row in [list(PLAN_HEADERS), *rows]]
    path = plan.sweep.plan_file
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def print_plan(plan: Plan, short: bool) -> None:
    """Per job (dry run) then per worker, then the totals; before a real launch only the last two.

    A dry run of more than PLAN_ROWS_SHOWN clips shows counts per model and duration instead of
    one line per clip, and writes the per-clip plan to the sweep folder's `plan.tsv`."""
    if not short:
        rows = plan_rows(plan)
        if len(rows) <= PLAN_ROWS_SHOWN:
            console.print(render_table(f"sweep {plan.sweep.name}: jobs", PLAN_HEADERS, rows))
        else:
            print_groups(plan)
            console.print(f"the plan of each of the {len(rows)} clips: {write_plan_file(plan, rows)}")
    if plan.shards and plan.estimate is not None:
        print_workers(plan, plan.estimate)
    hosts = Counter(shard.host for shard in plan.shards)
    console.print(
        f"sweep {plan.sweep.name}: {len(plan.jobs)} job(s), {len(plan.to_run)} to generate, "
        f"{len(plan.skipped)} already in store, {len(plan.running)} still running; "
        f"{len(plan.shards)} worker(s) on {len(hosts)} host(s); store {plan.store_url}"
    )
    if plan.estimate is None:
        console.print(f"estimate: {format_duration(plan.estimate_s)} wall time, {format_usd(plan.estimate_usd)}")
        return
    if not short:
        print_sources(plan.estimate)
    console.print(estimate_line(plan.estimate))


def print_groups(plan: Plan) -> None:
    """Clips per model and duration: how many, how many to generate, skip or leave running, audio minutes."""
    counts: dict[tuple[str, float], Counter] = {}
    for name, jobs in (("generate", plan.to_run), ("skip", plan.skipped), ("running", plan.running)):
        for job in jobs:
            counts.setdefault((job.model, float(job.duration_s)), Counter())[name] += 1
    rows = []
    for (model, duration), count in sorted(counts.items()):
        total = sum(count.values())
        rows.append(
            [
                model,
                f"{duration:g}",
                str(total),
                str(count["generate"]),
                str(count["skip"]),
                str(count["running"]),
                f"{total * duration / 60:.1f}",
            ]
        )
    headers = ("model", "duration_s", "clips", "generate", "skip (in store)", "running", "audio_min")
    console.print(render_table(f"sweep {plan.sweep.name}: clips per model and duration", headers, rows))


def print_workers(plan: Plan, estimate: Estimate) -> None:
    """Each worker's shard at launch, then what it is expected to make and be paid for while the
    fleet shares the sweep, in the bill's parts (boot only where machines boot)."""
    parts = [part for part in PARTS if part != "boot" or plan.backend.billing.boots_machines]
    rows = []
    for shard, worker in zip(plan.shards, estimate.workers, strict=True):
        rows.append(
            [
                f"{shard.host}#{shard.worker_id}",
                str(len(shard.jobs)),
                f"{sum(job.duration_s for job in shard.jobs) / 60:.1f}",
                str(worker.clips),
                *(format_duration(worker.parts[part]) for part in parts),
                format_duration(worker.total_s),
                f"${shard.hourly_cost_usd:.3f}/h",
                format_usd(worker.cost_usd),
            ]
        )
    headers = ("worker", "jobs", "audio_min", "est_clips", *parts, "est_time", "rate", "est_cost")
    console.print(render_table(f"sweep {plan.sweep.name}: workers ({plan.backend.name})", headers, rows))


def print_sources(estimate: Estimate) -> None:
    """Where each figure came from, figures of one source on one line."""
    by_source: dict[str, list[str]] = {}
    for label, source in estimate.sources.items():
        by_source.setdefault(source, []).append(label)
    for source, labels in by_source.items():
        console.print(f"  {', '.join(labels)}: {source}")


def estimate_line(estimate: Estimate) -> str:
    """Wall and machine time and cost; the range too when history is thin."""
    line = (
        f"estimate: {format_duration(estimate.wall_s)} wall time, {format_duration(estimate.machine_s)} machine time, "
        f"{format_usd(estimate.paid_usd)}"
    )
    if estimate.thin:
        (low_s, high_s), (low_usd, high_usd) = estimate.range_s, estimate.range_usd
        history = "no history" if estimate.history == 0 else f"history of {estimate.history} sweep(s) only"
        line += (
            f" (range {format_duration(low_s)}-{format_duration(high_s)}, "
            f"{format_usd(low_usd)}-{format_usd(high_usd)}: {history})"
        )
    return line


def count_by_host(states: dict[str, str], hosts: dict[str, str | None]) -> dict[str, Counter]:
    """State counts per host (an orphaned `done` counts as done), plus an `all` row."""
    by_host: dict[str, Counter] = {}
    pairs = Counter((hosts.get(job_id) or "-", state) for job_id, state in states.items())  # one pass, in C
    for (host, state), count in pairs.items():
        by_host.setdefault(host, Counter())[JobState.DONE if state == JobState.DONE_ORPHANS else state] += count
    counts = dict(sorted(by_host.items()))
    counts["all"] = sum(by_host.values(), Counter())
    return counts


def states_table(sweep_name: str, states: dict[str, str], hosts: dict[str, str | None]):
    rows = [[host, *(str(counts[c]) for c in STATE_COLUMNS)] for host, counts in count_by_host(states, hosts).items()]
    return render_table(f"sweep {sweep_name}", ("host", *STATE_COLUMNS), rows, bold_last=True)


def print_states(sweep_name: str, states: dict[str, str], hosts: dict[str, str | None]) -> None:
    """Per-host counts of each state, then the total."""
    console.print(states_table(sweep_name, states, hosts))


def print_attempts(manifest: Manifest, states: dict[str, str], reasons: dict[str, str], max_attempts: int) -> None:
    """One line per unfinished or failed job: its state, attempt count and why (printed at once:
    a print per line cost seconds per thousand jobs)."""
    lines = []
    for job_id, state in sorted(states.items()):
        if state == JobState.DONE:
            continue
        entry = manifest.jobs[job_id]
        why = f"  {reasons[job_id]}" if job_id in reasons else ""
        lines.append(f"{job_id}  {state}  attempt {entry.attempts}/{max_attempts}  {entry.output_name}{why}")
    if lines:
        print_plain("\n".join(lines))


def status_line(sweep_name: str, states: dict[str, str], hosts: dict[str, str | None]) -> str:
    """One plain line per change for logs: overall progress, then each host's non-zero counts."""
    counts = count_by_host(states, hosts)
    total = counts.pop("all")
    finished = total[JobState.DONE] + total[JobState.FAILED]
    parts = [f"{host}: " + ", ".join(f"{c} {n[c]}" for c in STATE_COLUMNS if n[c]) for host, n in counts.items()]
    overall = ", ".join(f"{c} {total[c]}" for c in STATE_COLUMNS)
    return f"sweep {sweep_name}: {finished}/{len(states)} finished ({overall}) | " + "; ".join(parts)


class MovingBar:
    """The overall bar and elapsed time, rendered anew at each of Live's refreshes (4 a second).

    Between polls the bar advances at the pace the sweep has shown so far (time per finished
    job), never past the jobs still running; before the first job finishes it pulses.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.total, self.finished, self.running = 1, 0, 0
        self.last_finish = started

    def update(self, total: int, finished: int, running: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if finished != self.finished:
            self.last_finish = now
        self.total, self.finished, self.running = max(1, total), finished, running

    def completed(self, now: float) -> float | None:
        """Jobs done plus the estimated share of the running ones; None while no job has finished."""
        if not self.finished:
            return None
        per_job = (self.last_finish - self.started) / self.finished
        ahead = (now - self.last_finish) / per_job if per_job > 0 else 0.0
        return self.finished + min(ahead, 0.95 * self.running)

    def __rich__(self) -> Table:
        now = time.monotonic()
        completed = self.completed(now)
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            "overall",
            ProgressBar(
                total=None if completed is None and self.running else self.total, completed=completed or 0, width=40
            ),
            f"{self.finished}/{self.total} finished",
            format_duration(now - self.started),
        )
        return bar


THROUGHPUT_EVERY_S = 60.0  # off a terminal, workers' throughput lines at most this often (and at the end)


class SweepProgress:
    """Following's view: a live per-host table, each worker's throughput and an overall bar on a
    terminal; otherwise a plain line per change, and the throughput lines once a minute and at the end."""

    def __init__(self, sweep_name: str) -> None:
        self.sweep_name = sweep_name
        self.started = time.monotonic()
        self.live = Live(console=console, refresh_per_second=4) if console.is_terminal else None
        self.bar = MovingBar(self.started)
        self.last_line = ""
        self.throughput: list[str] = []
        self.shown_throughput: list[str] = []
        self.throughput_at = -THROUGHPUT_EVERY_S

    def __enter__(self) -> SweepProgress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.stop()
        elif self.throughput != self.shown_throughput:
            self.show_throughput(time.monotonic())

    def show_throughput(self, now: float) -> None:
        print_plain("\n".join(f"  {line}" for line in self.throughput))
        self.shown_throughput, self.throughput_at = self.throughput, now

    def update(self, states: dict[str, str], hosts: dict[str, str | None], throughput: list[str] | None = None) -> None:
        """Show one poll's states (job_id -> state) with each job's host (job_id -> host), and a
        line per worker on its throughput (`sweep.follow.throughput_lines`)."""
        self.throughput = throughput or []
        if self.live is None:
            line = status_line(self.sweep_name, states, hosts)
            if line != self.last_line:
                console.print(f"[{time.strftime('%H:%M:%S')}] {line}")
                self.last_line = line
            now = time.monotonic()
            if self.throughput != self.shown_throughput and now - self.throughput_at >= THROUGHPUT_EVERY_S:
                self.show_throughput(now)
            return
        finished = sum(state in (JobState.DONE, JobState.DONE_ORPHANS, JobState.FAILED) for state in states.values())
        running = sum(state == JobState.RUNNING for state in states.values())
        self.bar.update(len(states), finished, running)
        parts = [states_table(self.sweep_name, states, hosts), *(["\n".join(self.throughput)] if throughput else [])]
        self.live.update(Group(*parts, self.bar))


@dataclass(frozen=True)
class RunSummary:
    clips: int
    audio_s: float
    wall_s: float
    paid_usd: float
    cost_report: Path

    @property
    def usd_per_audio_minute(self) -> float | None:
        return self.paid_usd / (self.audio_s / 60) if self.audio_s else None


def summarize(sweep: SweepDir, manifest: Manifest, cost: CostSummary) -> RunSummary:
    """Clips and audio from the pulled cost rows, paid cost from `cost` (machine time x rate).

    Wall time runs from the sweep's first launch to the end of its last worker's recorded life,
    so queueing and start-up count, as they do for the person waiting.
    """
    from musicsweep.costs.rows import read_cost_rows
    from musicsweep.costs.summary import read_lifetimes

    rows = read_cost_rows(sweep.folder(COSTS_DIR))
    started = manifest.launches[0].time if manifest.launches else manifest.created
    end = max((worker.machine.end for worker in read_lifetimes(sweep.folder(WORKERS_DIR))), default=time.time())
    return RunSummary(
        clips=len(rows),
        audio_s=sum(row.audio_seconds for row in rows),
        wall_s=max(0.0, end - started),
        paid_usd=cost.paid_usd,
        cost_report=sweep.cost_report,
    )


def print_summary(summary: RunSummary) -> None:
    per_minute = summary.usd_per_audio_minute
    console.print(
        f"summary: {summary.clips} clip(s), {summary.audio_s / 60:.2f} audio min, "
        f"wall time {format_duration(summary.wall_s)}, paid {format_usd(summary.paid_usd)}, "
        f"{'-' if per_minute is None else format_usd(per_minute)} per audio min; cost report {summary.cost_report}"
    )
