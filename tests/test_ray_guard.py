"""The guard that holds a Ray worker's process tree (musicsweep/backends/ray/guard.py), without Ray:
an "actor" process runs a tree under it and is then SIGKILLed, as Ray kills an actor (and its
process group and children) for kill_orphans, cancel or a lost node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from musicsweep.backends.ray.host import run_guarded
from tests.fixtures.servers import processes_mentioning, wait_until

ACTOR = """
import sys
from musicsweep.backends.ray.host import run_guarded
print(run_guarded(["bash", "-c", sys.argv[1]], 1.0), flush=True)
"""


def tree(marker: Path) -> str:
    """A script whose process tree names `marker` in every command line: a child and a grandchild."""
    return f"bash -c 'sleep 300; : {marker}' & (sleep 301; : {marker}) & wait; : {marker}"


def test_a_finished_command_gives_its_status_and_leaves_nothing(tmp_path: Path) -> None:
    assert run_guarded(["bash", "-c", f"(sleep 300; : {tmp_path}) & exit 7"], 1.0) == 7
    wait_until(lambda: processes_mentioning([str(tmp_path)]) == [], 10, "the leftover child to be killed")


def test_killing_the_actor_ends_the_whole_tree(tmp_path: Path) -> None:
    actor = subprocess.Popen(
        [sys.executable, "-c", ACTOR, tree(tmp_path)], stdout=subprocess.PIPE, start_new_session=True
    )
    wait_until(lambda: len(processes_mentioning([str(tmp_path)])) >= 4, 30, "the guarded tree")
    os.killpg(actor.pid, signal.SIGKILL)  # Ray: the actor's process group, at once
    actor.wait()
    wait_until(lambda: processes_mentioning([str(tmp_path)]) == [], 15, "the tree to end with its actor")
