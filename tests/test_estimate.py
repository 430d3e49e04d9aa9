"""The estimate before a launch: its parts, calibration from history, overrides, and the
estimate set beside the measured bill (summary lines, cost_summary.json, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from musicsweep.atomic import atomic_write_json
from musicsweep.backends.base import Shard
from musicsweep.config import parse_config
from musicsweep.costs.calibration import Calibration, CalibrationKey, load_calibration, record_sweep, save_calibration
from musicsweep.costs.compare import write_summary_beside_estimate
from musicsweep.costs.continuation import work_s
from musicsweep.costs.estimate import GUESS, Estimate, Estimator, WorkerEstimate, shared_finish_s
from musicsweep.job import Job
from musicsweep.layout import SweepDir, calibration_file
from musicsweep.manifest import JobEntry, LaunchRecord, Manifest

LAUNCH = "20260101T000000-abcdef"


def jobs(count: int, duration_s: float = 10.0, prefix: str = "prompt") -> list[Job]:
    return [
        Job("s", f"{prefix} {index}", duration_s, "tiny", index, f"clip_{prefix}_{index}") for index in range(count)
    ]


def local_config(tmp_path: Path, **raw):
    return parse_config({"engine": {"batch_size": 4}} | raw, "musicsweep.yaml", tmp_path)


def estimate(config, calibration: Calibration | None = None, count: int = 8, duration_s: float = 10.0):
    shard = Shard("localhost", 0, jobs(count, duration_s), hourly_cost_usd=1.0)
    return Estimator(config, "local", boots=False, calibration=calibration).estimate([shard], lambda s: s.host)


def worker_record(load_s: float, wall_per_work: float, clips: int = 4, duration_s: float = 10.0) -> dict:
    """A finished worker's lifetime record as worker/loop.py writes it: one batch of `clips`."""
    work = work_s(duration_s)
    generation = wall_per_work * work
    return {
        "launch_id": LAUNCH,
        "worker_id": 0,
        "host": "vm",
        "start": 1000.0,
        "end": 1000.0 + 0.5 + load_s + generation + 0.2 + 1.0,
        "hourly_cost_usd": 1.0,
        "model_load_s": load_s,
        "generation_s": generation,
        "clips": clips,
        "finished": True,
        "setup_s": 0.5,
        "upload_s": 0.2,
        "models": {"tiny": {"load_s": load_s, "device": "cpu", "dtype": "float32", "batch_size": 4}},
        "batches": [
            {
                "model": "tiny",
                "size": clips,
                "count": 1,
                "work_s": work,
                "audio_s": duration_s * clips,
                "wall_s": generation,
            }
        ],
    }


def finished_sweep(sweeps_dir: Path, name: str, record: dict, launch_estimate: dict | None = None) -> SweepDir:
    """A pulled sweep folder: manifest (with its launch's estimate) and one worker lifetime."""
    sweep = SweepDir(sweeps_dir, name)
    manifest = Manifest(sweep=name, created=1000.0, backend="local")
    for job in jobs(record["clips"]):
        entry = JobEntry.of(job, dict(job.variant))
        entry.worker, entry.host, entry.launch = 0, "localhost", LAUNCH
        manifest.jobs[job.job_id] = entry
    manifest.launches.append(LaunchRecord(LAUNCH, 1000.0, record["clips"], launch_estimate))
    sweep.write_manifest(manifest)
    atomic_write_json(sweep.folder("workers") / f"worker_0.{LAUNCH}.json", record)
    return sweep


def test_continuation_work_follows_the_engines_windows() -> None:
    from musicsweep.costs.continuation import windows_s
    from musicsweep.engine.longform import plan_windows

    for duration in (7.0, 30.0, 70.0, 300.0):
        frames = [w.new_frames for w in plan_windows(int(duration * 50), 50, 18.0)]
        assert [round(new * 50) for _, new in windows_s(duration)] == frames
    assert work_s(30.0) == pytest.approx(30.0)
    assert work_s(300.0) / work_s(30.0) == pytest.approx(10.47, abs=0.01)  # benchmarks/RESULTS.md
    assert work_s(180.0) > 6 * work_s(30.0)  # not linear: continuation steps attend to more


def test_calibration_file_round_trip(tmp_path: Path, calibration_cache: Path) -> None:
    assert calibration_file() == calibration_cache / "musicsweep" / "calibration.json"
    key = CalibrationKey("ssh", "gpu1", "small", "bfloat16", "cuda")
    calibration = Calibration()
    calibration.add(key, {"id": "a/1", "time": 1.0, "model_load_s": 12.5, "batches": {"4": {"work_s": 1, "wall_s": 2}}})
    calibration.add(key, {"id": "a/1", "time": 2.0, "model_load_s": 11.0})  # the same launch again replaces it
    save_calibration(calibration)
    loaded = load_calibration()
    assert loaded.entries == {key: [{"id": "a/1", "time": 2.0, "model_load_s": 11.0}]}
    assert json.loads(calibration_file().read_text())["version"] == 1
    calibration_file().write_text("{not json")
    assert load_calibration().entries == {}  # a broken cache warns and is ignored, never blocks a launch


def calibrate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, record: dict) -> Calibration:
    """Record one finished sweep into a cache folder of its own, as auto_pull does, and load it back."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / name / "cache"))
    sweep = finished_sweep(tmp_path / name, name, record)
    assert record_sweep(sweep, sweep.read_manifest(), {}) == [
        CalibrationKey("local", "localhost", "tiny", "float32", "cpu")
    ]
    return load_calibration()


def test_calibrated_plan_differs_from_the_default_guess_in_the_right_direction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = local_config(tmp_path)
    guess = estimate(config)
    assert set(guess.sources.values()) == {GUESS} and guess.thin and guess.history == 0
    low, high = guess.range_s
    assert low < guess.machine_s < high

    slower = estimate(config, calibrate(tmp_path, monkeypatch, "slow", worker_record(load_s=30.0, wall_per_work=2.0)))
    assert slower.machine_s > guess.machine_s
    parts = slower.workers[0].parts
    assert parts["model_load"] == pytest.approx(30.0)
    assert parts["generation"] == pytest.approx(2 * 2.0 * work_s(10.0))  # 8 clips: 2 batches of 4, as measured
    assert parts["setup"] == pytest.approx(0.5) and parts["upload"] == pytest.approx(8 * 0.05)
    source = "calibrated from 1 sweep on localhost (local), tiny, float32, cpu"
    assert slower.sources["generation (tiny, batch 4)"] == source and slower.sources["model load (tiny)"] == source
    assert slower.thin and slower.history == 1

    faster = estimate(config, calibrate(tmp_path, monkeypatch, "fast", worker_record(load_s=0.5, wall_per_work=0.05)))
    assert faster.machine_s < guess.machine_s


def test_history_scales_to_other_lengths_and_batch_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calibration = calibrate(tmp_path, monkeypatch, "cal", worker_record(load_s=1.0, wall_per_work=1.0))
    config = local_config(tmp_path)
    long = estimate(config, calibration, count=4, duration_s=180.0).workers[0].parts["generation"]
    assert long == pytest.approx(work_s(180.0))  # continuation's work, not 18 x the 10 s batch
    auto = parse_config({}, "musicsweep.yaml", tmp_path)  # batch_size auto: the size the workers picked
    assert estimate(auto, calibration, count=8).sources.keys() >= {"generation (tiny, batch 4)"}
    single = local_config(tmp_path, engine={"batch_size": 1})
    scaled = estimate(single, calibration, count=1)
    assert "scaled from batch 4" in scaled.sources["generation (tiny, batch 1)"]
    assert scaled.workers[0].parts["generation"] == pytest.approx(work_s(10.0) * 0.25**0.5)


def test_musicsweep_yaml_override_beats_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calibration = calibrate(tmp_path, monkeypatch, "cal", worker_record(load_s=30.0, wall_per_work=2.0))
    config = local_config(tmp_path, estimate={"throughput": {"tiny": 4.0}, "model_load_s": {"tiny": 2.0}})
    result = estimate(config, calibration, count=4)
    assert result.workers[0].parts["generation"] == pytest.approx(4 * work_s(10.0) / 4.0)
    assert result.workers[0].parts["model_load"] == 2.0
    assert result.sources["generation (tiny, batch 4)"] == "musicsweep.yaml estimate.throughput.tiny"
    assert result.sources["setup"].startswith("calibrated from 1 sweep")  # what is not overridden still calibrates
    off = local_config(tmp_path, estimate={"calibration": False})
    assert set(estimate(off, calibration).sources.values()) == {GUESS}


def test_estimate_beside_measure_in_summary_json_and_report(tmp_path: Path) -> None:
    from musicsweep.report.build import write_report

    config = local_config(tmp_path)
    launch_estimate = estimate(config, count=4).to_dict()
    sweep = finished_sweep(tmp_path / "runs", "beside", worker_record(load_s=3.0, wall_per_work=0.5), launch_estimate)
    cost, beside = write_summary_beside_estimate(sweep, sweep.read_manifest(), {})
    assert beside is not None and beside.estimated_s == pytest.approx(launch_estimate["machine_s"])
    assert beside.measured_s == pytest.approx(cost.machine_s)
    assert beside.ratio_s == pytest.approx(cost.machine_s / launch_estimate["machine_s"])
    assert beside.measured_parts["model_load"] == 3.0 and beside.measured_parts["setup"] == 0.5
    assert "measured/estimate" in beside.lines()[0] and "model load" in beside.lines()[1]
    written = json.loads(sweep.cost_summary.read_text())
    assert written["estimate"]["machine_s"] == pytest.approx(launch_estimate["machine_s"])
    assert written["estimate_ratio"]["machine_s"] == pytest.approx(beside.ratio_s)
    assert written["paid_usd"] == pytest.approx(cost.paid_usd)
    page = write_report(sweep, workers=1).read_text()
    assert "estimate at launch" in page and f"{beside.ratio_s:.2f}x time" in page


def test_a_team_shares_history_through_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from musicsweep.config import StoreConfig
    from musicsweep.layout import CALIBRATION_KEY
    from musicsweep.store import open_store

    store = open_store(StoreConfig(str(tmp_path / "store")))
    mine = calibrate(tmp_path, monkeypatch, "mine", worker_record(load_s=1.0, wall_per_work=1.0))
    save_calibration(mine, store=store)
    assert store.exists(CALIBRATION_KEY)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "colleague"))  # a colleague with no history of their own
    config = local_config(tmp_path, estimate={"share": True})
    shared = Estimator.load(config, "local", boots=False, store=store)
    assert shared.calibration.entries == mine.entries
    alone = Estimator.load(local_config(tmp_path), "local", boots=False, store=store)
    assert alone.calibration.entries == {}  # without `share`, the store's copy is not read


def test_plan_lines_say_where_figures_came_from_and_show_the_range_while_history_is_thin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from musicsweep.cli.display import estimate_line, print_sources

    guess = estimate(local_config(tmp_path))
    assert "range" in estimate_line(guess) and "no history" in estimate_line(guess)
    print_sources(guess)
    assert capsys.readouterr().out == f"  setup, model load (tiny), upload, idle, generation (tiny, batch 4): {GUESS}\n"
    calibration = calibrate(tmp_path, monkeypatch, "cal", worker_record(load_s=1.0, wall_per_work=1.0))
    key = next(iter(calibration.entries))
    for index in (2, 3):  # three sweeps behind every figure: history is no longer thin
        calibration.add(key, calibration.entries[key][0] | {"id": f"cal/{index}", "time": float(index)})
    settled = estimate(local_config(tmp_path), calibration)
    assert not settled.thin and "range" not in estimate_line(settled)
    assert settled.sources["model load (tiny)"].startswith("calibrated from 3 sweeps on localhost")


def test_wall_time_is_the_fleets_combined_speed_plus_one_batch(tmp_path: Path) -> None:
    """Workers take clips from each other's shards, so 16 clips beside 4 end together, not with the 16."""
    figures = {"throughput": {"tiny": 2.0}, "setup_s": 1.0, "model_load_s": {"tiny": 3.0}, "upload_s": 0.5}
    config = local_config(tmp_path, estimate=figures | {"idle_s": 1.0})
    clips = jobs(20)
    shards = [Shard("localhost", 0, clips[:16], 1.0), Shard("localhost", 1, clips[16:], 1.0)]
    result = Estimator(config, "local", boots=False).estimate(shards, lambda s: s.host)
    work = work_s(10.0)
    batch_s = 4 / 2.0 * work + 4 * 0.5  # a batch of 4 at 2 audio s per s, then its 4 uploads
    assert [worker.total_s for worker in result.shards] == pytest.approx([4 + 4 * batch_s + 1, 4 + batch_s + 1])
    assert result.shard_wall_s == pytest.approx(5 + 4 * batch_s)
    # together: 20 clips' work at twice one worker's speed after the 4 s of setup and load, plus one batch
    shared = 4 + 5 * batch_s / 2
    assert result.wall_s == pytest.approx(shared + batch_s)
    assert result.to_dict()["wall_s"] == result.wall_s and result.to_dict()["shard_wall_s"] == result.shard_wall_s
    # each worker is priced for its share: half the clips, busy until the shared finish, then its idle second
    assert [worker.clips for worker in result.workers] == [10, 10]
    assert [worker.total_s for worker in result.workers] == pytest.approx([shared + 1, shared + 1])
    assert result.machine_s == pytest.approx(sum(worker.total_s for worker in result.shards))  # one speed: the same
    assert [row["clips"] for row in result.to_dict()["workers"]] == [10, 10]


def worker(start_s: float, work: float, busy_s: float, batch_s: float = 5.0) -> WorkerEstimate:
    estimate = WorkerEstimate(0, "h", "m", 1.0, 1, work_s=work, longest_batch_s=batch_s)
    estimate.parts |= {"setup": start_s, "generation": busy_s}
    return estimate


def test_a_slow_or_late_worker_takes_its_share_of_the_fleets_speed() -> None:
    # a quarter-speed worker beside a full-speed one, each with half the work: fixed halves take
    # 4x the half (2.5x the ideal 100 * 2 / 1.25 = 160 s), shared work the ideal plus one batch
    fast, slow = worker(0.0, 100.0, 100.0), worker(0.0, 100.0, 400.0)
    assert shared_finish_s([fast, slow]) == pytest.approx(160.0)
    assert Estimate([fast, slow], {}, 3).wall_s == pytest.approx(165.0)
    assert Estimate([fast, slow], {}, 3).shard_wall_s == 400.0
    # priced as shared: both busy until 160 s, the fast one making 4/5 of the work; paid 320 s, not 500 s
    shares = Estimate([fast, slow], {}, 3).workers
    assert [w.work_s for w in shares] == pytest.approx([160.0, 40.0]) and [w.clips for w in shares] == [2, 0]
    assert [w.total_s for w in shares] == pytest.approx([160.0, 160.0])
    assert Estimate([fast, slow], {}, 3).machine_s == pytest.approx(320.0)
    # staggered starts: speed 3 from 10 s, speed 1 from 20 s; a worker starting at 100 s comes too late
    early, later, late = worker(10.0, 60.0, 20.0), worker(20.0, 20.0, 20.0), worker(100.0, 20.0, 20.0)
    assert shared_finish_s([late, later, early]) == pytest.approx((100 + 3 * 10 + 1 * 20) / 4)  # 37.5 s
    assert Estimate([early, later, late], {}, 3).wall_s == pytest.approx(37.5 + 5.0)
    # the late worker only starts (and is paid for its 100 s start); the others work until 37.5 s
    late_shares = Estimate([early, later, late], {}, 3).workers
    assert [w.total_s for w in late_shares] == pytest.approx([37.5, 37.5, 100.0])
    assert [w.work_s for w in late_shares] == pytest.approx([82.5, 17.5, 0.0])
    # one worker: its own shard, never more
    assert Estimate([fast], {}, 3).wall_s == fast.total_s == 100.0
    assert Estimate([fast], {}, 3).workers == [fast]
    assert shared_finish_s([worker(0.0, 0.0, 0.0)]) is None and Estimate([], {}, 3).wall_s == 0.0
