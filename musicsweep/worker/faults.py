"""Test hooks for the drills only: SIGKILL (or hang) the worker at a named phase. Never set outside tests.

`MUSICSWEEP_TEST_KILL_AT=load` kills it just before its first model load, `generate` right after
its first batch is generated (paid for, not yet saved), `upload` right after its first WAV
upload, before the cost row and `.done`; `windowN` right after a long batch's checkpoint of
window N. The drills prove a rerun neither loses nor regenerates what was saved.
`MUSICSWEEP_TEST_HANG_AT=PHASE` blocks there instead, its heartbeat still beating, until a stop is
requested (SIGTERM, SIGUSR2, a spot notice): the stall watchdog's drill (`auto_pull --kill-stalled`),
a stop during the model load (`load`), and one mid-batch, its claims held (`windowN`). It logs
`test hook: holding at PHASE` first, so a drill stops it only once it is there.
"""

from __future__ import annotations

import os
import signal
import threading

from musicsweep.contract import TEST_HANG_AT, TEST_KILL_AFTER_UPLOAD, TEST_KILL_AT
from musicsweep.worker.log import log

PHASES = ("load", "generate", "upload")


def kill_point(phase: str, stop: threading.Event | None = None) -> None:
    """SIGKILL this process, or hang it (until `stop` is set, if given), if the drill asked for `phase`."""
    wanted = os.environ.get(TEST_KILL_AT) or ("upload" if os.environ.get(TEST_KILL_AFTER_UPLOAD) == "1" else "")
    if wanted == phase:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(TEST_HANG_AT) == phase:
        log(f"test hook: holding at {phase}")
        (stop or threading.Event()).wait()
