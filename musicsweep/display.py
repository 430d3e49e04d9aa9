"""Human output: plan tables and job-state tables; rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from musicsweep.sweep import Plan

console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def print_plan(plan: Plan, short: bool) -> None:
    """The plan: per job (dry run) or per host (before a real launch), then the estimate."""
    skipped = {job.job_id for job in plan.skipped}
    running = {job.job_id for job in plan.running}
    if not short:
        table = Table(title=f"sweep {plan.sweep.name}: plan")
        for column in ("job", "prompt", "duration_s", "model", "seed", "output", "host", "action"):
            table.add_column(column)
        where = {job.job_id: f"{shard.host}#{shard.worker_id}" for shard in plan.shards for job in shard.jobs}
        for job in plan.jobs:
            action = "skip (in store)" if job.job_id in skipped else "running" if job.job_id in running else "generate"
            table.add_row(
                job.job_id,
                job.prompt[:40],
                f"{job.duration_s:g}",
                job.model,
                str(job.seed),
                job.output_name,
                where.get(job.job_id, "-"),
                action,
            )
        console.print(table)
    hosts = Counter(shard.host for shard in plan.shards)
    console.print(
        f"sweep {plan.sweep.name}: {len(plan.jobs)} job(s), {len(plan.to_run)} to generate, "
        f"{len(plan.skipped)} already in store, {len(plan.running)} still running; "
        f"{len(plan.shards)} worker(s) on {len(hosts)} host(s); store {plan.store_url}"
    )
    console.print(f"estimate: {plan.estimate_s / 60:.1f} min wall time, ${plan.estimate_usd:.4f}")


def print_states(sweep_name: str, states: dict[str, str], hosts: dict[str, str]) -> None:
    """Per-host counts of each state, then the total."""
    table = Table(title=f"sweep {sweep_name}")
    columns = ("done", "done_orphans", "running", "pending", "failed", "lost")
    table.add_column("host")
    for column in columns:
        table.add_column(column, justify="right")
    by_host: dict[str, Counter] = {}
    for job_id, state in states.items():
        by_host.setdefault(hosts.get(job_id) or "-", Counter())[state] += 1
    for host, counts in sorted(by_host.items()):
        table.add_row(host, *(str(counts[c]) for c in columns))
    total = Counter(states.values())
    table.add_row("all", *(str(total[c]) for c in columns), style="bold")
    console.print(table)
