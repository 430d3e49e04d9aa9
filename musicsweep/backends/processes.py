"""Stopping a worker's whole process tree on this machine: the local backend's workers, and the
guard that holds a Ray worker's tree on a node (`backends/ray/guard.py`)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

KILL_GRACE_S = 5.0


def group_alive(pgid: int) -> bool:
    """True while the group has a member. Exited members that are this process's own children
    (a launcher still running) are reaped first: as zombies they would keep the group "alive"."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_process_group(pgid: int, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the whole group, wait up to `grace_s`, then SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
