"""Relaunching a local sweep without paying twice: attempts, stalled workers, the launched-with
settings, two launches at once, read-only status.

Every test runs the real worker on the tiny model with 1 s clips (so the module is `e2e`) and
counts generations from the workers' own logs (one `generated NAME` line per clip it generated),
not just the final state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicsweep import run_sweep
from musicsweep.cli.main import main as musicsweep_main
from musicsweep.cli.pull import pull
from musicsweep.config import load_config
from musicsweep.layout import SweepDir
from musicsweep.states import JobState
from musicsweep.sweep.launch import launch
from musicsweep.sweep.plan import jobs_from_variants, make_plan
from tests.helpers import COLLIDING, set_recovery, wait_for_sweep, worker_log

pytestmark = pytest.mark.e2e


def clips(count: int, **extra) -> list[dict]:
    return [{"prompt": f"pay once {i}", "duration_s": 1, "model": "tiny", "seed": i, **extra} for i in range(count)]


def generations(sweep_root: Path) -> int:
    """Clips generated, from every worker log of the sweep (one log per worker and launch).

    `generated NAME`, not `uploaded NAME`: what is paid for is a generation, and a clip a killed
    worker left in the spool is uploaded by the next one without being generated again."""
    return sum(log.read_text().count("] generated ") for log in (sweep_root / "logs").glob("worker_*.log"))


# ---- unit level


# ---- end to end on the local backend


def test_the_colliding_pair_gives_two_clips_each_generated_once(project: Path) -> None:
    run_sweep(COLLIDING, name="collide")
    assert set(wait_for_sweep("collide").values()) == {JobState.DONE}
    sweep = project / "runs" / "collide"
    assert len(list((sweep / "audio").glob("*.wav"))) == 2
    assert len(list((sweep / "markers").glob("*.done"))) == 2
    assert generations(sweep) == 2


def test_a_leftover_failed_from_an_earlier_launch_is_superseded(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("MUSICSWEEP_INJECT_BATCH_FAILURE", "0")  # every generate call fails
    run_sweep(clips(2), name="stale")
    assert set(wait_for_sweep("stale").values()) == {JobState.FAILED}
    monkeypatch.delenv("MUSICSWEEP_INJECT_BATCH_FAILURE")
    run_sweep(clips(2), name="stale")
    assert musicsweep_main(["status", "stale"]) == 3, "the new attempt is not failed while it runs"
    assert pull("stale", interval_s=0.5, orphan_grace_s=0) == 0
    sweep = project / "runs" / "stale"
    assert generations(sweep) == 2 and len(list((sweep / "audio").glob("*.wav"))) == 2


def test_commands_use_the_store_the_sweep_was_launched_with(project: Path, capsys) -> None:
    elsewhere = project / "elsewhere"
    run_sweep(clips(2), name="moved", store=str(elsewhere))
    config_path = project / "musicsweep.yaml"
    config_path.write_text(config_path.read_text().replace("store: ./runs", "store: ./edited"))
    assert pull("moved", interval_s=0.5, relaunch_failed=True, orphan_grace_s=0) == 0
    out = capsys.readouterr().out
    assert "key 'store' differs from the launch of sweep moved; using the launched value" in out
    assert len(list((elsewhere / "moved" / "audio").glob("*.wav"))) == 2
    assert len(list((project / "runs" / "moved" / "audio").glob("*.wav"))) == 2  # pulled from there
    assert not (project / "edited").exists()
    assert generations(project / "runs" / "moved") == 2
    assert len(SweepDir(project / "runs", "moved").read_manifest().launches) == 1


def test_a_model_that_cannot_load_is_launched_once_and_reported(project: Path, capsys) -> None:
    run_sweep(clips(2, model="./no-such-model"), name="nomodel")
    started = time.monotonic()
    assert pull("nomodel", interval_s=0.5, relaunch_failed=True, orphan_grace_s=0) == 1
    assert time.monotonic() - started < 120, "--relaunch-failed must end by itself"
    assert len(SweepDir(project / "runs", "nomodel").read_manifest().launches) == 1
    out = capsys.readouterr().out
    assert out.count("permanent failure, not relaunched") == 2  # once per job, not once per poll


def test_a_transient_failure_is_relaunched_at_most_max_attempts_times(project: Path, monkeypatch, capsys) -> None:
    set_recovery(project, max_attempts=2, backoff_s=0.5)
    monkeypatch.setenv("MUSICSWEEP_INJECT_BATCH_FAILURE", "0")  # a simulated OOM: worth a retry, fails again
    run_sweep(clips(1), name="flaky")
    assert pull("flaky", interval_s=0.5, relaunch_failed=True, orphan_grace_s=0) == 1
    sweep = SweepDir(project / "runs", "flaky")
    manifest = sweep.read_manifest()
    assert len(manifest.launches) == 2 and [entry.attempts for entry in manifest.jobs.values()] == [2]
    logs = [sweep.worker(0, launch).log for launch in manifest.launch_ids()]
    assert [log.read_text().count("] worker 0/1 on ") for log in logs] == [1, 1], "each attempt keeps its own log"
    assert "failed 2 attempt(s) (recovery.max_attempts=2)" in capsys.readouterr().out
    assert musicsweep_main(["status", "flaky"]) == 0
    assert "attempt 2/2" in capsys.readouterr().out


def test_kill_stalled_kills_a_hung_worker_once_and_its_clips_are_relaunched(project: Path, monkeypatch, capsys) -> None:
    # 60 s: past the relaunched worker's start and model load (its first progress) with a wide
    # margin, since that worker is judged by the same limit (a tiny model loads in 40-60 s at load 20)
    set_recovery(project, stall_after_minutes=1.0, max_attempts=2, backoff_s=0.5)
    monkeypatch.setenv("MUSICSWEEP_TEST_HANG_AT", "load")  # heartbeat fresh, no progress
    run_sweep(clips(2), name="hung")
    monkeypatch.delenv("MUSICSWEEP_TEST_HANG_AT")  # the relaunched worker runs normally
    sweep = SweepDir(project / "runs", "hung")
    hung_pid = int(sweep.worker(0).pid.read_text())
    assert pull("hung", interval_s=0.5, relaunch_failed=True, kill_stalled=True, orphan_grace_s=0) == 0
    out = capsys.readouterr().out
    assert out.count("killing the stalled worker(s)") == 1
    with pytest.raises(ProcessLookupError):
        os.kill(hung_pid, 0)
    manifest = sweep.read_manifest()
    assert len(manifest.launches) == 2 and [entry.attempts for entry in manifest.jobs.values()] == [2, 2]
    assert len(list((sweep.root / "audio").glob("*.wav"))) == 2
    assert generations(sweep.root) == 2


def test_two_launches_at_once_generate_each_clip_once(project: Path) -> None:
    script = project / "s.py"
    script.write_text(f"from musicsweep import run_sweep\nrun_sweep({clips(7)!r}, name='race')\n")
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    launches = [subprocess.Popen([sys.executable, str(script)], cwd=project, env=env) for _ in range(2)]
    assert [launch.wait(timeout=300) for launch in launches] == [0, 0]
    states = wait_for_sweep("race", timeout_s=400)
    assert set(states.values()) == {JobState.DONE}
    sweep = project / "runs" / "race"
    assert len(list((sweep / "audio").glob("*.wav"))) == 7
    assert generations(sweep) == 7, "7 generations for 7 clips (14 before job-level claims)"
    started = worker_log("race").count("] worker 0/1 on ")
    launched = [record.jobs for record in SweepDir(project / "runs", "race").read_manifest().launches]
    assert started == 1 and launched == [7, 0], "the second launch waits for the first and starts no worker"


def test_two_launches_planned_at_once_start_one_worker(project: Path, capsys) -> None:
    """Both plan before either writes the manifest (the race's worst case, forced): the launch lock
    makes the second one see the first one's jobs running and start nothing."""
    config = load_config()
    jobs = jobs_from_variants(clips(7), "both", config.max_duration_s)
    first, second = make_plan(jobs, config, "both"), make_plan(jobs, config, "both")
    assert len(first.to_run) == len(second.to_run) == 7
    assert len(launch(first, config).to_run) == 7
    assert launch(second, config).to_run == []
    assert "another launch of sweep both started 7 of these job(s) meanwhile; launching 0" in capsys.readouterr().out
    states = wait_for_sweep("both", timeout_s=300)
    assert set(states.values()) == {JobState.DONE}
    sweep = project / "runs" / "both"
    assert generations(sweep) == 7
    assert worker_log("both").count("] worker 0/1 on ") == 1


def test_status_and_dry_run_change_nothing(project: Path) -> None:
    run_sweep(clips(1), name="still")
    assert pull("still", interval_s=0.5, orphan_grace_s=0) == 0
    root = project / "runs"

    def snapshot() -> dict[str, tuple[int, bytes]]:
        return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}

    before = snapshot()
    assert musicsweep_main(["status", "still"]) == 0
    run_sweep(clips(1), name="still", dry_run=True)
    assert snapshot() == before
