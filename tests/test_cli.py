"""The `musicsweep` console script: help with examples, and launch -> status -> cancel on a real local sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicsweep.config import load_config
from musicsweep.layout import SweepDir

MUSICSWEEP = str(Path(sys.executable).parent / "musicsweep")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MUSICSWEEP, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [[], ["launch"], ["pull"], ["status"], ["cancel"], ["report"]])
def test_help_shows_examples(project: Path, command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout.lower()
    assert f"musicsweep {command[0] if command else 'launch'} " in result.stdout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(stat) and not stat.startswith("Z")


@pytest.mark.e2e
def test_launch_status_cancel(project: Path) -> None:
    # Clips long enough that the worker is still generating when cancel arrives.
    launched = cli("launch", "sweep.prompts=[a,b]", "sweep.durations=[60]", "name=cli-run")
    assert launched.returncode == 0, launched.stderr
    assert "sweep cli-run: 2 job(s), 2 to generate" in launched.stdout  # the short plan before launching
    sweep = SweepDir(load_config().sweeps_dir, "cli-run")
    worker_pid = int(sweep.worker(0).pid.read_text())
    try:
        status = cli("status", "cli-run")
        assert status.returncode == 3, status.stderr  # jobs still running
        counts = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()[2:]}
        pending, running, stalled, done, failed, lost = map(int, counts["all"])
        assert pending + running == 2 and stalled == done == failed == lost == 0
        assert status.stdout.count("attempt 1/3") == 2  # each unfinished job's attempts

        cancelled = cli("cancel", "cli-run")
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancelled sweep cli-run" in cancelled.stdout
        assert not alive(worker_pid)
        after = cli("status")  # the latest sweep
        assert after.returncode == 0 and "sweep cli-run" in after.stdout
        totals = next(line.split() for line in after.stdout.splitlines() if line.startswith("all "))
        assert totals == ["all", "0", "0", "0", "0", "2", "0"]
    finally:
        if alive(worker_pid):
            os.killpg(worker_pid, 9)


def test_errors_are_one_line(project: Path) -> None:
    missing = cli("status", "nonesuch")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: {project / 'runs' / 'nonesuch' / 'manifest.json'}: no such sweep (run it first)"
    ]
    unknown = cli("frobnicate")
    assert unknown.returncode == 2 and "invalid choice: 'frobnicate'" in unknown.stderr
