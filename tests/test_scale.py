"""Orchestration at scale: ids computed once, a big plan summarized with its rows in a file, exact
states from one poll of a 10,000-clip sweep. Timings live in benchmarks/scale.py, never here."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

import musicsweep.job as job_module
from musicsweep.backends.local import LocalBackend
from musicsweep.backends.probe import HostProbe, parse_probe, probe_command, probe_here
from musicsweep.cli.display import PLAN_HEADERS, PLAN_ROWS_SHOWN
from musicsweep.cli.main import main as musicsweep_main
from musicsweep.cli.run import run_sweep
from musicsweep.config import load_config
from musicsweep.job import Job
from musicsweep.layout import SweepDir
from musicsweep.manifest import JobEntry, LaunchRecord, Manifest
from musicsweep.states import JobState
from musicsweep.store.local import LocalStore
from musicsweep.store.verify import expected_wav_size
from musicsweep.sweep.observe import observe

DEAD_PID = 2**22 + 1  # above the default pid_max: never a live process


def test_job_id_is_hashed_once_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[bytes] = []
    sha256 = hashlib.sha256

    def counting_sha256(data: bytes):
        hashed.append(data)
        return sha256(data)

    monkeypatch.setattr(job_module.hashlib, "sha256", counting_sha256)
    job = Job("s", "lofi piano", 2.0, "tiny", 7, "lofi_piano")
    ids = {job.job_id for _ in range(21)}
    assert (job.hash8, job.output_name) == (job.job_id[:8], f"lofi_piano_{job.job_id[:8]}.wav")
    assert len(hashed) == 1 and len(ids) == 1
    assert pickle.loads(pickle.dumps(job)).job_id == job.job_id and len(hashed) == 1
    assert Job("s", "lofi piano", 2.0, "tiny", 7, "other").job_id == job.job_id and len(hashed) == 2


def variants(count: int) -> list[dict]:
    return [{"prompt": f"clip {index % 7}", "duration_s": 1.0 + index % 2, "seed": index} for index in range(count)]


def test_a_big_dry_run_prints_a_summary_and_writes_each_clip_to_plan_tsv(project: Path, capsys) -> None:
    count = PLAN_ROWS_SHOWN + 50
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, "big")
    first = run_sweep(variants(count), "big", dry_run=True)
    finished = first.jobs[:30]
    store = LocalStore(Path(config.store.url))
    for job in finished:
        paths = sweep.job(job)
        store.put_bytes(paths.audio_key, bytes(expected_wav_size(job.duration_s)))
        store.put_bytes(paths.done_key, b"")
    capsys.readouterr()

    plan = run_sweep(variants(count), "big", dry_run=True)

    out = capsys.readouterr().out
    assert not any(job.job_id in out for job in plan.jobs)  # no line per clip on the terminal
    groups = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith("tiny ")}
    ones, twos = (sum(job.duration_s == duration for job in finished) for duration in (1.0, 2.0))
    assert groups == {
        "1": ["75", str(75 - ones), str(ones), "0", f"{75 / 60:.1f}"],
        "2": ["75", str(75 - twos), str(twos), "0", f"{150 / 60:.1f}"],
    }
    assert f"the plan of each of the {count} clips: {sweep.plan_file}" in out
    lines = sweep.plan_file.read_text().splitlines()
    assert lines[0].split("\t") == list(PLAN_HEADERS) and len(lines) == count + 1
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert set(rows) == {job.job_id for job in plan.jobs}
    assert [rows[job.job_id][6] for job in plan.jobs].count("skip (in store)") == 30
    assert all(rows[job.job_id][5] == job.output_name and rows[job.job_id][6] == "skip (in store)" for job in finished)
    assert {rows[job.job_id][7] for job in plan.to_run} == {"localhost#0"}
    assert not sweep.manifest.exists()


def test_a_small_dry_run_still_prints_each_clip_and_writes_no_plan_file(project: Path, capsys) -> None:
    plan = run_sweep(variants(PLAN_ROWS_SHOWN), "small", dry_run=True)
    out = capsys.readouterr().out
    assert all(job.job_id in out for job in plan.jobs)
    assert not plan.sweep.plan_file.exists()


def test_one_poll_of_a_10k_clip_sweep_counts_every_state(project: Path, capsys) -> None:
    """5,300 done (`.done` and the exited worker's `.pid`), 1,200 failed (`.pid` of a dead worker, no
    `.done`), 3,500 pending (no `.pid` yet, no worker recorded): `status` reads each exactly."""
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, "tenk")
    manifest = Manifest(sweep="tenk", backend="local")
    markers, jobs_dir = sweep.root / "markers", sweep.root / "jobs"
    markers.mkdir(parents=True)
    jobs_dir.mkdir()
    for index in range(10_000):
        job = Job("tenk", f"clip {index}", 1.0, "tiny", index, f"clip_{index}")
        manifest.jobs[job.job_id] = JobEntry(job.output_name, job.prompt, 1.0, "tiny", index, worker=index % 4)
        if index < 6_500:
            newline = "\n" if index % 2 else ""  # a `.pid` written without a final newline reads the same
            (jobs_dir / f"{job.job_id}.pid").write_text(f"{DEAD_PID} {DEAD_PID}{newline}")
        if index < 5_300:
            (markers / f"{job.job_id}.done").write_text("1\n")
    sweep.write_manifest(manifest)

    seen = observe(sweep, manifest, LocalBackend(config), config)

    counts = {state: list(seen.states.values()).count(state) for state in set(seen.states.values())}
    assert counts == {JobState.DONE: 5_300, JobState.FAILED: 1_200, JobState.PENDING: 3_500}
    assert musicsweep_main(["status", "tenk"]) == 3
    out = capsys.readouterr().out
    assert out.count(" failed  attempt 0/") == 1_200 and out.count(" pending  attempt 0/") == 3_500
    assert musicsweep_main(["cancel", "tenk"]) == 0


def test_probe_reads_pid_files_with_and_without_a_final_newline(tmp_path: Path) -> None:
    for folder in ("jobs", "scripts", "markers"):
        (tmp_path / folder).mkdir()
    (tmp_path / "jobs" / "a.pid").write_text("12 13\n")
    (tmp_path / "jobs" / "b.pid").write_text("14 15")
    (tmp_path / "jobs" / "c.pid").write_text("")  # being written: not yet a pid
    (tmp_path / "scripts" / "worker_3.pid").write_text("99\n")
    (tmp_path / "jobs" / "d.pid.tmp").write_text("16 17\n")  # not a `.pid` file
    (tmp_path / "markers" / "a.done").write_text("1\n")
    output = subprocess.run(["bash", "-c", probe_command(str(tmp_path))], capture_output=True, text=True, check=True)
    probe = parse_probe(output.stdout)
    assert (probe.job_pids, probe.worker_pids, output.stderr) == ({"a": (12, 13), "b": (14, 15)}, {3: 99}, "")
    here = probe_here(str(tmp_path), str(tmp_path / "markers"))  # the local backend's, in-process
    assert (here.job_pids, here.worker_pids, here.markers) == (probe.job_pids, probe.worker_pids, {"a.done"})
    assert os.getpid() in here.alive_pids and probe_here(str(tmp_path / "gone"), "markers") == HostProbe()


def test_specs_are_written_once_and_a_torn_one_is_repaired(tmp_path: Path) -> None:
    sweep = SweepDir(tmp_path, "specs")
    jobs = [Job("specs", f"clip {index}", 1.0, "tiny", index, f"clip_{index}") for index in range(3)]
    sweep.write_specs(jobs, sweep.job_files())
    assert [sweep.read_spec(job.job_id) for job in jobs] == jobs
    inodes = [sweep.job(job).spec.stat().st_ino for job in jobs]
    sweep.job(jobs[1]).spec.write_bytes(b"torn")

    sweep.write_specs(jobs, sweep.job_files())

    assert [sweep.read_spec(job.job_id) for job in jobs] == jobs
    same = [sweep.job(job).spec.stat().st_ino == inode for job, inode in zip(jobs, inodes, strict=True)]
    assert same == [True, False, True]  # only the torn one was replaced


def test_manifest_json_is_what_asdict_gave_and_reads_back() -> None:
    entry = JobEntry("clip_1.wav", "clip", 1.0, "tiny", 2, {"meta_tags": ["a", {"b": 1}]}, 0, "localhost", "l1", 1)
    manifest = Manifest("s", 1.0, {"abc": entry}, [LaunchRecord("l1", 2.0, 1, {"wall_s": 3.0})], "local")
    assert manifest.to_json() == asdict(manifest)
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
