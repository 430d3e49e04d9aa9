"""What a `.failed` marker says: the error, and whether trying again could help.

A failure that will fail again (the model cannot be fetched or loaded, invalid parameters) is
written with a first line `permanent failure: REASON`; `--relaunch-failed` never relaunches it
and reports it once. Any other text (a traceback, an interruption notice) is worth a retry.
"""

from __future__ import annotations

PERMANENT_PREFIX = "permanent failure: "
# Exceptions a clip raises on its own, at batch size 1, that another attempt would raise again.
PERMANENT_ERRORS = ("ValueError", "TypeError", "KeyError", "IndexError", "MusicsweepError")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no error text)"


def failure_text(error_text: str, permanent: bool) -> str:
    """The marker's text: the error, headed by `permanent failure: ...` when a retry cannot help."""
    if not permanent:
        return error_text
    detail = error_text if len(error_text.strip().splitlines()) > 1 else ""
    return f"{PERMANENT_PREFIX}{last_line(error_text)}\n{detail}"


def permanent_reason(text: str) -> str | None:
    """The reason of a permanent failure, None for one worth retrying."""
    first = text.split("\n", 1)[0]
    return first.removeprefix(PERMANENT_PREFIX).strip() if first.startswith(PERMANENT_PREFIX) else None


def is_permanent_error(traceback_text: str) -> bool:
    """A clip that failed alone with an error of its inputs, not of the machine (OOM, I/O, signal)."""
    error = last_line(traceback_text).split(":", 1)[0].rsplit(".", 1)[-1]
    return error in PERMANENT_ERRORS
