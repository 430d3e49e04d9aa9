"""Can the worker run with a given interpreter? Checked before a launch writes anything.

A missing torch, transformers or soundfile would otherwise surface as one `.failed` marker per
clip, after the sweep folder, specs and scripts were written. `find_spec` looks for the modules
without importing them, so the check takes milliseconds even where torch is installed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from importlib.util import find_spec

from musicsweep.errors import MusicsweepError

WORKER_MODULES = ("torch", "transformers", "soundfile")
FIX = "run `uv sync --extra worker` in a checkout, or `pip install '.[worker]'` there"
# Prints the missing module names on one line (nothing when all are there); exits 0 either way.
PROBE = "import importlib.util as u; print(', '.join(m for m in {modules!r} if u.find_spec(m) is None))"


def probe_code() -> str:
    return PROBE.format(modules=WORKER_MODULES)


def missing_message(python: str, missing: list[str]) -> str:
    return f"worker dependencies missing for {python}: {', '.join(missing)}; {FIX}"


def same_interpreter(python: str) -> bool:
    """True when `python` is this process's interpreter, so the check needs no subprocess.

    Paths are compared unresolved: a venv's python is a symlink to its base interpreter, and
    resolving it would mistake another venv for this one.
    """
    return os.path.abspath(os.path.expanduser(python)) == os.path.abspath(sys.executable)


def missing_modules(python: str | None = None) -> list[str]:
    """The worker modules `python` (default: this interpreter) cannot find."""
    if python is None or same_interpreter(python):
        return [module for module in WORKER_MODULES if find_spec(module) is None]
    try:
        result = subprocess.run(
            [os.path.expanduser(python), "-c", probe_code()], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as error:
        raise MusicsweepError(f"python {python}: cannot run it ({error.strerror})") from None
    if result.returncode != 0:
        raise MusicsweepError(f"python {python}: exits {result.returncode} on a bare import check")
    return [module for module in result.stdout.strip().split(", ") if module]


def require_worker_deps(python: str | None, where: str) -> None:
    """Raise one line naming `where` and the fix when the worker cannot import its modules."""
    python = python or sys.executable
    missing = missing_modules(python)
    if missing:
        raise MusicsweepError(f"{where}: {missing_message(python, missing)}")


def remote_check(python: str) -> str:
    """Bash that fails with `missing_message` on stderr when `python` on a host lacks a module.

    `python` is a command prefix, as in the worker script (`{python} -m musicsweep.worker`), so it
    is not quoted here either.
    """
    code = shlex.quote(probe_code())
    message = shlex.quote(missing_message(python, ["MISSING"])).replace("MISSING", "'\"$missing\"'")
    return (
        f"missing=$({python} -c {code}) || {{ echo {shlex.quote(f'python {python} does not run')} >&2; exit 1; }}; "
        f'[ -z "$missing" ] || {{ echo {message} >&2; exit 1; }}'
    )
