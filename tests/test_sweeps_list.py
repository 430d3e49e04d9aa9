"""`musicsweep list`: every sweep in sweeps_dir, newest first, read from the last pull, no remote call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from musicsweep.cli.main import main
from musicsweep.config import load_config
from musicsweep.costs.summary import write_cost_summary
from musicsweep.layout import SweepDir
from tests.synthetic_sweep import FakeClip, write_synthetic_sweep


def clips(states: list[str]) -> list[FakeClip]:
    return [
        FakeClip({"prompt": f"tune {i}", "duration_s": 1, "model": "tiny", "seed": i}, s) for i, s in enumerate(states)
    ]


def sweep_with(name: str, states: list[str], created: float) -> SweepDir:
    """A pulled sweep whose manifest says it was created (and launched) at `created`."""
    sweep = write_synthetic_sweep(load_config().sweeps_dir, name, clips(states))
    manifest = json.loads(sweep.manifest.read_text())
    sweep.manifest.write_text(json.dumps(manifest | {"created": created}))
    return sweep


def listed(capsys: pytest.CaptureFixture) -> list[list[str]]:
    assert main(["list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["NAME", "CREATED", "BACKEND", "CLIPS", "STATE", "PAID"]
    return [row.split()[:1] + row.split()[3:] for row in rows[1:]]  # CREATED is two words


def test_list_shows_each_state_newest_first(project: Path, capsys: pytest.CaptureFixture) -> None:
    write_cost_summary(sweep_with("all-done", ["done", "done", "done"], created=1000.0))
    sweep_with("one-failed", ["done", "failed"], created=3000.0)
    sweep_with("half-way", ["done", "unfinished", "unfinished"], created=2000.0)
    sweep_with("stopped", ["unfinished", "done"], created=4000.0)
    assert main(["cancel", "stopped"]) == 0
    capsys.readouterr()
    assert listed(capsys) == [
        ["stopped", "local", "1/2", "cancelled", "-"],
        ["one-failed", "local", "1/2", "failed", "-"],
        ["half-way", "local", "1/3", "running", "-"],
        ["all-done", "local", "3/3", "finished", "$0.01"],
    ]


def test_a_launch_after_cancel_is_running_again(project: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = sweep_with("again", ["unfinished"], created=1000.0)
    assert main(["cancel", "again"]) == 0
    manifest = json.loads(sweep.manifest.read_text())
    launch = {"id": "L2", "time": 2.0e10, "jobs": 1}  # launched after the cancel
    sweep.manifest.write_text(json.dumps(manifest | {"launches": [launch]}))
    capsys.readouterr()
    assert listed(capsys) == [["again", "local", "0/1", "running", "-"]]


def test_no_sweeps_is_one_line(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    assert capsys.readouterr().out == f"{load_config().sweeps_dir}: no sweeps yet\n"
