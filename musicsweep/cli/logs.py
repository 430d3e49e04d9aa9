"""What reaches the terminal from the library's loggers.

Backends and the store log through `logging` ("musicsweep.*") and never print; the CLI (and
`run_sweep`, which a sweep script calls) attaches one handler that shows INFO and above on the
console. A program that attaches its own handler to the "musicsweep" logger first keeps it, and
then decides alone what is shown.
"""

from __future__ import annotations

import logging

from musicsweep.terminal import console


class ConsoleHandler(logging.Handler):
    """Plain lines on the shared console: warnings say so, info is the message alone."""

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        console.print(f"warning: {message}" if record.levelno == logging.WARNING else message)


def show_library_logs() -> None:
    logger = logging.getLogger("musicsweep")
    if logger.handlers:
        return
    logger.addHandler(ConsoleHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False  # shown once, not again by a root handler
