"""`musicsweep doctor [--backend NAME] [--fix] [--model NAME]...`: all checks, one table, exit status.

Exit 0 only when no check failed; 1 otherwise. The config is checked first: when it cannot be
read, the checks that depend on it are not run, and that is itself the failure to fix.
"""

from __future__ import annotations

import argparse

from musicsweep.backends.registry import BACKEND_NAMES
from musicsweep.config import Config, load_config
from musicsweep.doctor.backends import CHECKS, UV_NEEDED
from musicsweep.doctor.env import python_check, uv_check
from musicsweep.doctor.models import model_checks
from musicsweep.doctor.result import FAIL, OK, Check, render
from musicsweep.doctor.store import store_checks
from musicsweep.errors import MusicsweepError

EXAMPLES = """examples:
  musicsweep doctor                        # the backend and store of musicsweep.yaml
  musicsweep doctor --backend ssh --fix    # another backend; do the safe fixes
  musicsweep doctor --model small --model ./my-model"""


def config_check() -> tuple[Config | None, Check]:
    try:
        config = load_config()
    except MusicsweepError as error:
        return None, Check("musicsweep.yaml", FAIL, str(error), "correct the key named")
    detail = config.source if config.source != "built-in defaults" else "none found: built-in defaults apply"
    return config, Check("musicsweep.yaml", OK, f"{detail} (backend {config.backend}, store {config.store.url})")


def run_doctor(backend: str | None = None, fix: bool = False, models: list[str] | None = None) -> list[Check]:
    checks = [python_check()]
    config, check = config_check()
    checks.append(check)
    if config is None:
        return [*checks, uv_check(None)]
    if backend is not None:
        config = config.with_overrides(backend=backend)
    checks.append(uv_check(UV_NEEDED[config.backend]))
    try:
        checks += CHECKS[config.backend](config, fix)
    except MusicsweepError as error:  # the backend's settings themselves are invalid
        checks.append(Check(f"backends.{config.backend}", FAIL, str(error), "correct the key named"))
    checks += store_checks(config, fix)
    return checks + model_checks(models or [], config.engine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="musicsweep doctor",
        description="Check everything a launch on the configured (or named) backend needs; report every problem.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=BACKEND_NAMES, help="check this backend instead of musicsweep.yaml's")
    parser.add_argument(
        "--fix",
        action="store_true",
        help="do the safe fixes: create the store folder, install the worker extra, "
        "add missing known_hosts entries (after showing their fingerprints)",
    )
    parser.add_argument("--model", action="append", default=[], help="also check this model (repeatable)")
    args = parser.parse_args(argv)
    checks = run_doctor(args.backend, args.fix, args.model)
    from musicsweep.terminal import console

    console.print(render(checks))
    failed = [check for check in checks if check.failed]
    console.print(f"{len(failed)} problem(s)" + (": " + "; ".join(c.name for c in failed) if failed else ""))
    return 1 if failed else 0
