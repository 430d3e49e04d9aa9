"""A launcher SIGKILLed just before `submit`, or just after it returned, then the same command run
again (the sweep script, or `auto_pull --relaunch-failed`): every clip once, one worker per launch
that started one, and no lock left behind.

`MUSICSWEEP_TEST_LAUNCHER_KILL_AT` (contract.py) kills the launcher there. Before submit, the
manifest already assigns the jobs but no worker exists: the launch reads dead once its lock is
free, and is started again at once. After submit, the worker runs and every poll sees it.
"""

from __future__ import annotations

import pickle
import signal
from pathlib import Path

import pytest

from musicsweep.cli.pull import pull
from musicsweep.config import load_config
from musicsweep.layout import spec_list_name
from musicsweep.store import open_store
from musicsweep.store.shards import put_specs
from musicsweep.sweep.lock import held_elsewhere
from musicsweep.sweep.plan import jobs_from_variants
from tests.helpers import (
    MakesFolder,
    assert_intact,
    clips,
    run_sweep_script,
    sweep_dir,
    wait_for_exit,
    worker_log,
    write_local_config,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("kill_at", "again"), [("submit", "rerun"), ("submit", "relaunch"), ("submitted", "rerun")])
def test_a_killed_launcher_recovers_by_running_the_command_again(project: Path, kill_at: str, again: str) -> None:
    write_local_config(project, "./runs", batch_size=2)
    name = f"killed-{kill_at}-{again}"
    jobs = jobs_from_variants(clips(2, 1).variants(), name)
    killed = run_sweep_script(project, name, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    sweep = sweep_dir(name)
    manifest = sweep.read_manifest()
    assert [(record.jobs, record.submitted) for record in manifest.launches] == [(2, False)]
    assert not held_elsewhere(sweep), "the kernel dropped the dead launcher's lock"
    started = kill_at == "submitted"
    assert sweep.worker(0).pid.exists() == started

    if again == "rerun":
        rerun = run_sweep_script(project, name)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "in progress" not in rerun.stdout
        assert f"launched {0 if started else 2} job(s)" in rerun.stdout
    assert pull(name, interval_s=0.5, relaunch_failed=again == "relaunch", orphan_grace_s=0) == 0
    wait_for_exit(int(sweep.worker(0).pid.read_text()))
    launched = [record.jobs for record in sweep.read_manifest().launches]
    assert launched == ([2] if started else [2, 2]) + ([0] if started and again == "rerun" else [])
    text = worker_log(name)
    assert text.count("] worker 0/1 on ") == 1, "one worker: the dead launch's, or the one started again"
    assert_intact(open_store(load_config().store), jobs, text)


def test_a_spec_swapped_in_the_sweep_folder_holds_back_only_its_own_job(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both clips' launcher died before submitting them, then one spec was swapped in the sweep
    folder: `--relaunch-failed` starts the other clip, says in one line why the swapped one is not
    relaunched, and runs nothing of it."""
    write_local_config(project, "./runs", batch_size=2)
    name = "swapped-relaunch"
    swapped, kept = jobs_from_variants(clips(2, 1).variants(), name)
    assert run_sweep_script(project, name, "submit").returncode == -signal.SIGKILL
    sweep = sweep_dir(name)
    made = tmp_path / "made-by-the-swapped-spec"
    sweep.job(swapped).spec.write_bytes(pickle.dumps(MakesFolder(made)))

    assert pull(name, interval_s=0.5, relaunch_failed=True, orphan_grace_s=0) == 1
    out = capsys.readouterr().out
    assert out.count("not relaunched, spec refused for 1 job(s): spec digest mismatch: refusing to load") == 1
    assert f"relaunched 1 job(s): {kept.job_id}" in out
    assert not made.exists()
    assert [record.jobs for record in sweep.read_manifest().launches] == [2, 1]
    assert_intact(open_store(load_config().store), [kept], worker_log(name))
    assert worker_log(name).count("] generated ") == 1


def test_a_spec_list_no_job_needs_any_more_is_removed_by_the_next_launch(project: Path) -> None:
    """A one-clip sweep whose launcher died before submitting, then grown to two clips and run
    again: the new launch starts both clips, so no worker can need the first launch's list any
    more; it is removed from the sweep folder and the store, and the follow keeps the new one."""
    write_local_config(project, "./store", batch_size=2)
    name = "spec-lists"
    assert run_sweep_script(project, name, "submit", count=1).returncode == -signal.SIGKILL
    sweep = sweep_dir(name)
    (first,) = (record.specs_sha256 for record in sweep.read_manifest().launches)
    store = open_store(load_config().store)
    put_specs(store, sweep, [], first)  # where EC2 and Ray workers find it

    def lists() -> tuple[set[str], set[str]]:
        here = {name for name in sweep.job_files() if name.startswith("specs-")}
        return here, {key.rsplit("/", 1)[1] for key in store.list(f"{name}/jobs/")}

    assert lists() == ({spec_list_name(first)},) * 2
    rerun = run_sweep_script(project, name, count=2)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "launched 2 job(s)" in rerun.stdout
    second = sweep.read_manifest().launches[1].specs_sha256
    assert first != second and lists() == ({spec_list_name(second)}, set())
    assert pull(name, interval_s=0.5, orphan_grace_s=0) == 0
    assert lists() == ({spec_list_name(second)}, set())
    assert_intact(store, jobs_from_variants(clips(2, 1).variants(), name), worker_log(name))
