"""`run_sweep`: what a sweep script calls. Validate, plan, show the plan, confirm spending, launch."""

from __future__ import annotations

import sys
from typing import Any

from musicsweep.cli.display import print_plan
from musicsweep.cli.logs import show_library_logs
from musicsweep.config import Config
from musicsweep.errors import MusicsweepError
from musicsweep.sweep.launch import launch
from musicsweep.sweep.plan import Plan, jobs_from_variants, make_plan, resolve_config
from musicsweep.sweep.variants import VariantGenerator


def run_sweep(
    variants: VariantGenerator | list[dict[str, Any]],
    name: str,
    config: Config | None = None,
    backend: str | None = None,
    store: str | None = None,
    dry_run: bool = False,
    yes: bool = False,
) -> Plan:
    """Validate, plan and launch a sweep; returns the plan. Nothing is written when it would fail.

    `dry_run` prints the full plan and stops; `yes` launches on a backend that spends money without asking.
    """
    show_library_logs()
    config = resolve_config(config, backend, store)
    variant_list = variants.variants() if isinstance(variants, VariantGenerator) else list(variants)
    jobs = jobs_from_variants(variant_list, name, config.max_duration_s)
    plan = make_plan(jobs, config, name, dry_run=dry_run)
    print_plan(plan, short=not dry_run)
    if not dry_run:
        confirm_spending(plan, yes)
        plan = launch(plan, config)
        print(f"launched {len(plan.to_run)} job(s); follow with: python -m musicsweep.auto_pull {name}")
    return plan


def confirm_spending(plan: Plan, yes: bool) -> None:
    """A backend that spends money starts only after a yes: `yes=True`, or an answer typed on the terminal."""
    if yes or not plan.backend.billing.spends_money or not plan.to_run:
        return
    name = plan.backend.name
    if not sys.stdin.isatty():
        raise MusicsweepError(f"backend {name!r} spends money and stdin is not a terminal: pass --yes to launch")
    answer = input(f"launch {len(plan.to_run)} job(s) on {name} for about ${plan.estimate_usd:.2f}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise MusicsweepError(f"launch on {name!r} not confirmed: nothing was started")
