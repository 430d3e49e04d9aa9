"""One launch (or cancel) of a sweep at a time on this machine.

Two launches of one sweep started together (two terminals, a script run twice, a re-run beside
`auto_pull --relaunch-failed`, two relaunches) would each plan every clip, write the manifest over
the other's and start workers from one shared script path, so a worker could even run with the
other launch's id. The claims stop a clip from being generated twice, but not a second paid worker
from starting. So a launch takes this lock, an exclusive `flock` on `{sweep}/.launch.lock`, from
its last look at the manifest until its workers are started; the second launch waits, then sees
the first one's jobs as running. `cancel` takes it too, so it never stops a sweep halfway through
a launch. The kernel drops the lock with its process, so a killed launcher never leaves the sweep
locked, and `held_elsewhere` tells a launch that is still submitting from one whose launcher died.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from musicsweep.layout import SweepDir

_held: set[str] = set()  # lock files this process holds: its own launch is not "elsewhere"


@contextlib.contextmanager
def launch_lock(sweep: SweepDir, doing: str = "launch") -> Iterator[None]:
    sweep.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep.launch_lock, os.O_RDWR | os.O_CREAT, 0o600)
    path = str(sweep.launch_lock)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another launch of sweep {sweep.name} is in progress; {doing} waits for it", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _held.add(path)
        yield
    finally:
        _held.discard(path)
        os.close(fd)


def held_elsewhere(sweep: SweepDir) -> bool:
    """True while another process of this machine holds the sweep's launch lock (launching or cancelling)."""
    path = str(sweep.launch_lock)
    if path in _held:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock at once
    return False
