"""Each worker's throughput and the shards it took clips from, as following shows them (no worker runs)."""

from __future__ import annotations

import pytest

from musicsweep.cli import display
from musicsweep.costs.rows import COLUMNS, CostRow, cells
from musicsweep.costs.throughput import rate_lines, worker_rates
from musicsweep.manifest import JobEntry, Manifest
from musicsweep.sweep.follow import throughput_lines


def row(job_id: str, worker_id: int, finished_at: float | None, launch: str | None = "L1", host: str = "h0") -> dict:
    """A row as `cost_report.csv` holds it: a 2 s clip, 5 s of a batch of 2 (10 s per batch)."""
    cost = CostRow(f"{job_id}.wav", "p", 2.0, 5.0, 0.0, "tiny", 0, job_id, host, 0.0, 2.0, worker_id, 2)
    cost = CostRow(**cost.to_dict() | {"launch_id": launch, "finished_at": finished_at})
    return dict(zip(COLUMNS, cells(cost), strict=True))


def manifest(owners: dict[str, tuple[str, int, str]]) -> Manifest:
    jobs = {
        job_id: JobEntry(f"{job_id}.wav", "p", 2.0, "tiny", worker=worker, host=host, launch=launch)
        for job_id, (launch, worker, host) in owners.items()
    }
    return Manifest(sweep="s", jobs=jobs)


OWNERS = {"a": ("L1", 0, "h0"), "b": ("L1", 0, "h0"), "c": ("L1", 0, "h0"), "d": ("L1", 1, "h1"), "e": ("L1", 1, "h1")}


def test_rates_run_from_the_first_batchs_start_to_the_last_clip() -> None:
    # worker 0 made a, b and c (its own) from 90 s (100 less a 10 s batch), then e, of worker 1's
    # shard, at 130 s; worker 1 (slow, on h1) made only d
    rows = [
        row("a", 0, 100.0),
        row("b", 0, 110.0),
        row("c", 0, 120.0),
        row("e", 0, 130.0),
        row("d", 1, 160.0, host="h1"),
    ]
    owners = {job_id: (launch, worker) for job_id, (launch, worker, _) in OWNERS.items()}
    fast, slow = worker_rates(rows, owners)
    assert (fast.worker_id, fast.clips, fast.audio_s, fast.span_s) == (0, 4, 8.0, 40.0)
    assert (fast.clips_per_min, fast.audio_s_per_min) == (pytest.approx(6.0), pytest.approx(12.0))
    assert dict(fast.taken) == {("L1", 1): 1} and not slow.taken
    assert (slow.clips, slow.span_s, slow.clips_per_min) == (1, 10.0, pytest.approx(6.0))
    assert rate_lines([fast, slow], {("L1", 0): "h0", ("L1", 1): "h1"}) == [
        "h0#0: 4 clip(s), 6.0 clips/min, 12.0 audio s/min; took 1 of h1#1's shard",
        "h1#1: 1 clip(s), 6.0 clips/min, 12.0 audio s/min",
    ]


def test_following_names_shards_across_launches_and_reads_rows_of_earlier_versions() -> None:
    # the second launch's worker 0 took two clips of the first launch's worker 1; a row written
    # before rows named their launch and time counts, without a rate, for its own shard's launch
    owners = OWNERS | {"f": ("L2", 0, "h2")}
    rows = [row("d", 0, 50.0, launch="L2", host="h2"), row("e", 0, 60.0, launch="L2", host="h2")]
    rows.append(row("a", 0, None, launch=None))
    assert throughput_lines(manifest(owners), rows) == [
        "h0#0 (launch L1): 1 clip(s), -",
        "h2#0 (launch L2): 2 clip(s), 6.0 clips/min, 12.0 audio s/min; took 2 of h1#1 (launch L1)'s shard",
    ]
    assert throughput_lines(manifest(owners), []) == []


def test_plain_progress_shows_throughput_at_once_then_each_minute_and_at_the_end(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([1000.0, 1010.0, 1070.0, 1071.0, 1072.0])
    monkeypatch.setattr(display.time, "monotonic", lambda: next(clock))
    states, hosts = {"a": "running"}, {"a": "h0"}
    with display.SweepProgress("s") as progress:  # started at 1000 s
        progress.update(states, hosts, ["h0#0: 1 clip(s), -"])  # 1010 s: the first lines, at once
        progress.update(states, hosts, ["h0#0: 2 clip(s), 6.0 clips/min, 12.0 audio s/min"])  # 1070 s: a minute on
        progress.update(states, hosts, ["h0#0: 3 clip(s), 6.0 clips/min, 12.0 audio s/min"])  # 1071 s: held back
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if "h0#0:" in line]
    assert lines == [
        "h0#0: 1 clip(s), -",
        "h0#0: 2 clip(s), 6.0 clips/min, 12.0 audio s/min",
        "h0#0: 3 clip(s), 6.0 clips/min, 12.0 audio s/min",  # at the end
    ]
