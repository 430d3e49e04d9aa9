"""One launch of a sweep at a time on this machine.

Two launches of one sweep started together (two terminals, a script run twice, a re-run beside
`auto_pull --relaunch-failed`) would each plan every clip, write the manifest over the other's
and start workers from one shared script path, so a worker could even run with the other
launch's id. The claims stop a clip from being generated twice, but not a second paid worker
from starting. So a launch takes this lock, an exclusive `flock` on `{sweep}/.launch.lock`, from
its last look at the manifest until its workers are started; the second launch waits, then sees
the first one's jobs as running. The kernel drops the lock with its process, so a killed launcher
never leaves the sweep locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from musicsweep.layout import SweepDir


@contextlib.contextmanager
def launch_lock(sweep: SweepDir) -> Iterator[None]:
    sweep.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep.launch_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another launch of sweep {sweep.name} is in progress; waiting for it", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
