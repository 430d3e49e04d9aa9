"""The worker's log: one `musicsweep.worker` logger, one line format, configured once by the entry point.

Every line is `[HH:MM:SS] message` on standard output (the script redirects it to the worker's log
file). The main, saver and heartbeat threads all log: the handler writes each line, newline
included, in one write under its lock and flushes it, so lines never interleave and the drills
and `auto_pull` can count whole lines (`] generated NAME`, `] uploaded NAME`, `] window i/n`).
"""

from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("musicsweep.worker")
FORMAT, DATE_FORMAT = "[%(asctime)s] %(message)s", "%H:%M:%S"


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is at the time of each line (a test's capture, a redirect)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging() -> None:
    """Idempotent: a second call (a test building a second worker) adds no second handler."""
    if any(isinstance(handler, StdoutHandler) for handler in LOGGER.handlers):
        return
    handler = StdoutHandler()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False  # the launcher's own handlers (cli/logs.py) never see a worker's lines twice


def log(message: str) -> None:
    LOGGER.info(message)
