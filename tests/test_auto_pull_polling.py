"""auto_pull's poll schedule: it backs off while nothing changes and reports a finished local sweep promptly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from musicsweep.backends.local import LocalBackend
from musicsweep.backends.ssh import SSHBackend
from musicsweep.cli.pull import pull
from musicsweep.cli.run import run_sweep
from musicsweep.states import FINISHED_STATES, JobState
from musicsweep.sweep.polling import PollSchedule, schedule_for

CLIP_DONE = (*FINISHED_STATES, JobState.DONE_ORPHANS)  # `.done` is there; the worker may still be exiting


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


@pytest.mark.e2e
def test_local_sweep_is_reported_soon_after_its_last_clip(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Timed by the wait before the poll that saw the sweep finished, not by when pull returned:
    on a loaded machine pulling and summing up take seconds, which says nothing about the interval."""
    polls: list[tuple[float, float, bool]] = []  # each real poll's start, end, and whether all had finished
    real_poll = LocalBackend.poll

    def timed_poll(self: LocalBackend, sweep, manifest):
        started = time.time()
        states = real_poll(self, sweep, manifest)
        polls.append((started, time.time(), all(state in CLIP_DONE for state in states.values())))
        return states

    monkeypatch.setattr(LocalBackend, "poll", timed_poll)
    run_sweep([{"prompt": "prompt finish", "duration_s": 1, "model": "tiny", "seed": 3}], name="prompt")
    assert pull("prompt") == 0
    last_done = max(path.stat().st_mtime for path in (project / "runs/prompt/markers").glob("*.done"))
    seen = next(index for index, (_, _, finished) in enumerate(polls) if finished)
    assert seen > 0 and polls[seen - 1][0] < last_done, "a poll ran while the clip was still generating"
    wait = polls[seen][0] - polls[seen - 1][1]
    assert wait <= LocalBackend.poll_interval_s[1] + 1.0, "the old fixed 10 s interval could wait up to 10 s"
