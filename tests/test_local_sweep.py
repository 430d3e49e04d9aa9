"""End to end on the local backend: the quickstart sweep, kill-and-rerun, orphans, bad input."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from musicsweep import MusicsweepError, VariantGenerator, run_sweep
from musicsweep.cli.pull import main as auto_pull_main
from musicsweep.costs.rows import read_cost_report
from musicsweep.layout import SweepDir
from tests.fixtures.servers import wait_until
from tests.helpers import wait_for_sweep, wav_info

REPO = Path(__file__).resolve().parents[1]
FRAME_SAMPLES = 640  # one EnCodec frame at 32 kHz = 20 ms


def quickstart_generator() -> VariantGenerator:
    return runpy.run_path(str(REPO / "examples" / "quickstart.py"))["vg"]


@pytest.mark.e2e
def test_quickstart_sweep_end_to_end(project: Path) -> None:
    run_sweep(quickstart_generator(), name="first-sweep")
    states = wait_for_sweep("first-sweep")
    assert set(states.values()) == {"done"}
    sweep = project / "runs" / "first-sweep"
    wavs = sorted((sweep / "audio").glob("*.wav"))
    assert len(wavs) == 4
    rows = read_cost_report(sweep / "cost_report.csv")
    assert sorted(row["s3_filename"] for row in rows) == [wav.name for wav in wavs]
    audio = {}
    for row in rows:
        rate, channels, frames = wav_info(sweep / "audio" / row["s3_filename"])
        assert (rate, channels) == (32000, 1)
        assert abs(frames - float(row["requested_duration_s"]) * rate) <= FRAME_SAMPLES
        assert float(row["generation_time_s"]) > 0
        audio[(row["prompt"], row["seed"])] = soundfile.read(sweep / "audio" / row["s3_filename"])[0]
    lofi, epic = audio[("lofi hip hop with warm piano", "70")], audio[("epic orchestral trailer", "70")]
    assert not np.allclose(lofi, epic), "different prompts must give different audio"
    lofi_10 = audio[("lofi hip hop with warm piano", "70")][: 32000 * 5]
    lofi_20 = audio[("lofi hip hop with warm piano", "140")][: 32000 * 5]
    assert not np.allclose(lofi_10, lofi_20), "different seeds must give different audio"
    assert auto_pull_main(["first-sweep", "--once"]) == 0
    assert_calibrated_from_this_sweep(sweep)


def assert_calibrated_from_this_sweep(sweep: Path) -> None:
    """auto_pull set the launch estimate beside the bill and recorded the sweep; the next plan uses it."""
    summary = json.loads((sweep / "cost_summary.json").read_text())
    assert summary["estimate"]["machine_s"] > 0
    assert summary["estimate_ratio"]["machine_s"] == pytest.approx(
        summary["machine_s"] / summary["estimate"]["machine_s"]
    )
    vg = VariantGenerator()
    vg.add("prompt", ["a new prompt"])
    vg.add("duration_s", [10])
    vg.add("model", ["tiny"])
    plan = run_sweep(vg, name="next-sweep", dry_run=True)
    assert plan.estimate is not None
    assert plan.estimate.sources["model load (tiny)"].startswith("calibrated from 1 sweep on localhost (local), tiny")


def worker_pgid(sweep: Path) -> int:
    pid_file = sweep / "scripts" / "worker_0.pid"
    return os.getpgid(int(pid_file.read_text()))


def wait_for_group_to_die(pgid: int, timeout_s: float = 30) -> None:
    """SIGKILL is asynchronous: a large process can take a moment to exit under load."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listing = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout
        if not any(
            int(pg) == pgid and not st.startswith("Z") for pg, st in (line.split()[:2] for line in listing.splitlines())
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"process group {pgid} still alive after SIGKILL")


@pytest.mark.e2e
def test_sigkill_mid_sweep_then_rerun_finishes_without_regenerating(project: Path) -> None:
    vg = VariantGenerator()
    vg.add("prompt", ["rain on a tin roof", "deep house groove", "solo cello"])
    vg.add("duration_s", [3])
    vg.add("seed", [1, 2])
    (project / "musicsweep.yaml").write_text(
        (project / "musicsweep.yaml").read_text().replace("batch_size: 4", "batch_size: 1")
    )
    run_sweep(vg, name="killed")
    sweep = project / "runs" / "killed"
    deadline = time.monotonic() + 120
    while len(list((sweep / "markers").glob("*.done"))) < 2:
        assert time.monotonic() < deadline, "no clip finished in time"
        time.sleep(0.2)
    pgid = worker_pgid(sweep)
    os.killpg(pgid, signal.SIGKILL)
    wait_for_group_to_die(pgid)
    finished = {path.name: path.stat().st_mtime_ns for path in (sweep / "audio").glob("*.wav")}
    assert 2 <= len(finished) < 6
    assert auto_pull_main(["killed", "--once"]) != 0
    plan = run_sweep(vg, name="killed")
    assert len(plan.skipped) >= 2 and len(plan.to_run) == 6 - len(plan.skipped)
    states = wait_for_sweep("killed")
    assert set(states.values()) == {"done"}
    wavs = {path.name: path.stat().st_mtime_ns for path in (sweep / "audio").glob("*.wav")}
    assert len(wavs) == 6
    for name, mtime in finished.items():
        assert wavs[name] == mtime, f"{name} was generated twice"
    assert len(read_cost_report(sweep / "cost_report.csv")) == 6


@pytest.mark.e2e
def test_orphan_worker_tree_is_killed(project: Path) -> None:
    """`.done` present while the worker lives on: auto_pull kills its whole process group."""
    vg = VariantGenerator()
    vg.add("prompt", ["short"])
    vg.add("duration_s", [1])
    run_sweep(vg, name="orphans")
    wait_for_sweep("orphans")
    sweep = SweepDir(project / "runs", "orphans")
    job_id = next(iter(sweep.read_manifest().jobs))
    tree = subprocess.Popen(["bash", "-c", "sleep 300 & sleep 300; wait"], start_new_session=True)

    def group() -> list[str]:
        return subprocess.run(["pgrep", "-g", str(tree.pid)], capture_output=True, text=True).stdout.split()

    wait_until(lambda: len(group()) >= 3, 30, "bash and its two sleeps")  # a fixed 0.3 s raced the forks
    children = group()
    (sweep.root / "jobs" / f"{job_id}.pid").write_text(f"{tree.pid} {tree.pid}\n")
    assert auto_pull_main(["orphans", "--once", "--orphan-grace", "0"]) == 0
    tree.wait(10)
    for pid in children:
        state = subprocess.run(["ps", "-o", "stat=", "-p", pid], capture_output=True, text=True).stdout.strip()
        assert state == "" or state.startswith("Z")


def bad_generator(kind: str, tmp: Path) -> VariantGenerator:
    vg = VariantGenerator()
    if kind == "prompts":
        (tmp / "prompts.txt").write_text("good ; 5 ; a\nbad line without fields\n")
        return VariantGenerator.from_prompts_file(tmp / "prompts.txt")
    vg.add("prompt", ["same"])
    vg.add("duration_s", [5])
    if kind == "duplicate":
        vg.add("note", ["x", "y"], hide=True)  # two variants, same audio, same output name
    if kind == "model":
        vg.add("model", ["not a model name"])
    if kind == "cycle":
        vg.add("seed", lambda temperature: [1])
        vg.add("temperature", lambda seed: [1.0])
    return vg


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("prompts", "prompts.txt:2: expected 'PROMPT ; DURATION ; FILE_NAME'"),
        ("duplicate", "duplicate output name 'same_"),
        ("model", "key 'model': unknown model name form 'not a model name'"),
        ("cycle", "dependency cycle"),
        ("backend", "unknown backend 'kubernetes'"),
        (
            "yaml",
            "malformed YAML: expected ',' or '}', but got '<stream end>' (while parsing a flow mapping at line 2)",
        ),
    ],
)
def test_bad_input_fails_before_anything_starts(project: Path, kind: str, message: str) -> None:
    if kind == "yaml":
        (project / "musicsweep.yaml").write_text("backend: local\nstore: {oops\n")
    if kind == "backend":
        (project / "musicsweep.yaml").write_text("backend: kubernetes\n")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    with pytest.raises(MusicsweepError) as error:
        run_sweep(bad_generator(kind, project), name="bad")
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    after = sorted(p.relative_to(project) for p in project.rglob("*") if p.name != "prompts.txt")
    assert after == [p for p in before if p.name != "prompts.txt"], "a failed sweep must write nothing"


def test_quickstart_script_reports_errors_in_one_line(project: Path) -> None:
    (project / "musicsweep.yaml").write_text("backend: nowhere\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")], capture_output=True, text=True, cwd=project
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: {project / 'musicsweep.yaml'}: key 'backend': unknown backend 'nowhere' "
        "(known: ['local', 'ssh', 'slurm', 'ec2', 'runpod', 'ray'])"
    ]
    assert not (project / "runs").exists()


def test_killing_a_group_whose_leader_is_our_own_child_does_not_wait_out_the_grace() -> None:
    """The launcher's own child, once killed, is a zombie until reaped; it must not count as alive."""
    from musicsweep.backends.processes import KILL_GRACE_S, kill_process_group

    child = subprocess.Popen(["bash", "-c", "sleep 60 & wait"], start_new_session=True)
    started = time.monotonic()
    kill_process_group(child.pid)
    assert time.monotonic() - started < KILL_GRACE_S - 1
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)
