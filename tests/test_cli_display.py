"""The live display of a sweep (musicsweep/cli/display.py): it moves between polls."""

from __future__ import annotations

import io
import time

from rich.console import Console

from musicsweep.cli.display import MovingBar


def render(bar: MovingBar) -> str:
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    console.print(bar)
    return console.file.getvalue()


def test_bar_and_elapsed_time_move_between_polls() -> None:
    started = time.monotonic() - 20.0
    bar = MovingBar(started)
    bar.update(total=4, finished=0, running=4, now=started + 1)
    assert bar.completed(started + 5) is None  # no pace yet: the bar pulses
    bar.update(total=4, finished=1, running=3, now=started + 10)
    assert bar.completed(started + 10) == 1.0
    assert bar.completed(started + 15) == 1.5  # 10 s per job so far
    assert bar.completed(started + 100) == 1 + 0.95 * 3  # never past the running jobs
    first = render(bar)
    time.sleep(1.1)
    second = render(bar)
    assert "1/4 finished" in first and "1/4 finished" in second
    assert first != second, "the elapsed time and the bar advance without a poll"
