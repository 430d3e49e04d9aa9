"""A worker runs only for a launch of its own version: a host whose environment holds other code
would mix results of two code bases in one sweep, so it says so in one line and stops."""

from __future__ import annotations

from collections.abc import Mapping

from musicsweep.contract import VERSION
from musicsweep.version import describe, version
from musicsweep.worker.context import log

EXIT_OTHER_VERSION = 2


def refuse_other_version(env: Mapping[str, str]) -> None:
    """Log the version this worker runs; exit when the launch's (MUSICSWEEP_VERSION, if set) differs."""
    log(describe())
    wanted = env.get(VERSION)
    if wanted and wanted != version():
        log(f"error: this worker runs musicsweep {version()} but the launch is musicsweep {wanted}: refusing to start")
        raise SystemExit(EXIT_OTHER_VERSION)
