"""Dynamic assignment on the local backend: workers take free clips of other shards (`worker/pool.py`).

Real workers on the tiny model, 1 s clips, batch size 1; one worker is slowed to a quarter of its
speed by a SIGSTOP/SIGCONT duty cycle on its process group once both have loaded the model. What is
asserted is what is paid for: every clip generated exactly once (the workers' `generated NAME`
lines and the store's `.done` markers), and who made which (`took NAME from ...`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from musicsweep import run_sweep
from musicsweep.config import StoreConfig
from musicsweep.layout import SweepDir, list_markers
from musicsweep.store import open_store
from tests.helpers import generated_names, latest_log, slowed_once_loaded, taken_names, wait_for_exit

pytestmark = pytest.mark.e2e


def clips(count: int) -> list[dict]:
    return [{"prompt": f"fleet {i}", "duration_s": 1, "model": "tiny", "seed": i} for i in range(count)]


def use_workers(project: Path, workers: int) -> None:
    (project / "musicsweep.yaml").write_text(
        "backend: local\nstore: ./runs\nsweeps_dir: ./runs\nengine:\n  batch_size: 1\n"
        f"backends:\n  local:\n    workers: {workers}\n    hourly_cost_usd: 0.5\n"
    )


def worker_pgid(sweep: SweepDir, worker: int) -> int:
    """The local backend starts each worker script in a session of its own: its pid is the group."""
    return int(sweep.worker(worker).pid.read_text())


def done_count(sweep: SweepDir) -> int:
    markers = list_markers(open_store(StoreConfig(str(sweep.sweeps_dir))), sweep.name)
    return sum(name.endswith(".done") for name in markers)


def test_the_fast_worker_takes_the_slow_workers_unstarted_clips(project: Path) -> None:
    use_workers(project, 2)
    run_sweep(clips(12), name="fleet")
    sweep = SweepDir(project / "runs", "fleet")
    fast, slow = worker_pgid(sweep, 0), worker_pgid(sweep, 1)
    fast_log, slow_log = latest_log(sweep, 0), latest_log(sweep, 1)
    with slowed_once_loaded(slow, (slow_log, 1), (fast_log, 1)):
        wait_for_exit(fast, timeout_s=240)
        wait_for_exit(slow, timeout_s=240)
    logs = [fast_log.read_text(), slow_log.read_text()]
    made = Counter(name for text in logs for name in generated_names(text))
    assert len(made) == 12 and set(made.values()) == {1}, made
    assert done_count(sweep) == 12
    taken = taken_names(logs[0])
    assert taken, "the fast worker took none of the slow worker's clips"
    assert set(taken) <= set(generated_names(logs[0]))
    assert all("from worker 1 of launch " in line for line in logs[0].splitlines() if "] took " in line)
    assert "nothing left to take" in logs[0]
    assert all("worker finished with status 0" in text for text in logs)


def test_a_second_launch_takes_the_first_launchs_free_clips(project: Path) -> None:
    """The first launch's one worker is slow; a second launch of the sweep (two more clips) starts
    while it runs: its worker makes its own two, then takes the first launch's free clips."""
    use_workers(project, 1)
    run_sweep(clips(12), name="twice")
    sweep = SweepDir(project / "runs", "twice")
    first, first_log = worker_pgid(sweep, 0), latest_log(sweep)  # each launch's worker 0 has its own log
    second_log = lambda: latest_log(sweep)  # noqa: E731  (the second launch's, once it is recorded)
    with slowed_once_loaded(
        first, (first_log, 1), (second_log, 1), meanwhile=lambda: run_sweep(clips(14), name="twice")
    ):
        second = worker_pgid(sweep, 0)
        assert second != first
        first_launch = sweep.read_manifest().launches[0].id
        wait_for_exit(second, timeout_s=240)
        wait_for_exit(first, timeout_s=240)
    text = first_log.read_text() + second_log().read_text()
    made = Counter(generated_names(text))
    assert len(made) == 14 and set(made.values()) == {1}, made
    assert done_count(sweep) == 14
    lines = [line for line in second_log().read_text().splitlines() if "] took " in line]
    assert any(f"from worker 0 of launch {first_launch}" in line for line in lines), lines
