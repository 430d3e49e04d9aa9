"""Holds one Ray worker's process tree on its node:
`python -m musicsweep.backends.ray.guard GRACE_S ALIVE_FD STATUS_FD COMMAND...`.

Ray stops a worker by ending its actor's process (`kill_orphans`, a stopped job on cancel, a lost
node), and it then SIGKILLs that process's group and its children: the worker's script, the worker
and what they started would either die without stopping cleanly or, in a session of their own,
live on, unseen and holding the GPU. So the guard detaches from the actor (a second fork, a
session of its own: Ray's clean-up never reaches it) and runs COMMAND in a process group of its
own. It learns that the actor has ended from ALIVE_FD, the read end of a pipe whose write end only
the actor holds: end of file means the actor is gone, however it went. It then stops the whole
group (SIGTERM: the script asks the worker to stop after its batch; SIGKILL after GRACE_S). When
COMMAND exits by itself, whatever it left in its group is killed, and its status is written to
STATUS_FD for the actor.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys

from musicsweep.backends.processes import kill_process_group

CHECK_S = 0.5  # how often the guard looks whether COMMAND has exited


def main(argv: list[str]) -> int:
    grace_s, alive_fd, status_fd, command = float(argv[0]), int(argv[1]), int(argv[2]), argv[3:]
    if os.fork() > 0:
        os._exit(0)  # the actor waits only for this first process
    os.setsid()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    while child.poll() is None:
        ready, _, _ = select.select([alive_fd], [], [], CHECK_S)
        if ready and not os.read(alive_fd, 1):  # the actor is gone
            kill_process_group(child.pid, grace_s)
            return 128 + signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    os.write(status_fd, str(child.returncode).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
