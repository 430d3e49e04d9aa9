"""auto_pull reports a finished local sweep promptly, and its live display moves between polls."""

from __future__ import annotations

import time
from pathlib import Path

from musicsweep.backends.local import LocalBackend
from musicsweep.backends.ssh import SSHBackend
from musicsweep.cli.auto_pull import pull
from musicsweep.cli.polling import PollSchedule, schedule_for
from musicsweep.cli.run import run_sweep


def test_schedule_backs_off_while_nothing_changes_and_resets_on_a_change() -> None:
    schedule = PollSchedule(0.5, 2.0)
    running, done = {"a": "running"}, {"a": "done"}
    waits = [schedule.next_wait(running) for _ in range(6)] + [schedule.next_wait(done)]
    assert waits == [0.5, 0.75, 1.125, 1.6875, 2.0, 2.0, 0.5]


def test_local_polls_sooner_than_remote_and_interval_is_the_ceiling() -> None:
    assert LocalBackend.poll_interval_s == (0.5, 2.0)
    assert SSHBackend.poll_interval_s == (2.0, 10.0)
    schedule = schedule_for(SSHBackend.poll_interval_s, 1.0)
    assert (schedule.first, schedule.longest) == (1.0, 1.0)


def test_local_sweep_is_reported_soon_after_its_last_clip(project: Path) -> None:
    run_sweep([{"prompt": "prompt finish", "duration_s": 1, "model": "tiny", "seed": 3}], name="prompt")
    assert pull("prompt") == 0
    returned = time.time()
    last_done = max(path.stat().st_mtime for path in (project / "runs/prompt/markers").glob("*.done"))
    assert returned - last_done < 4.0, "the old fixed 10 s interval could wait up to 10 s"
