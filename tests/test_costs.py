"""Cost rows, the cost report, the paid-versus-marginal summary, and pulling by size and ETag."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from musicsweep.billing import MachineTime
from musicsweep.config import StoreConfig
from musicsweep.costs.rows import (
    COLUMNS,
    CostRow,
    marginal_cost_usd,
    merge_cost_report,
    read_cost_report,
    render_cost_report,
    update_cost_report,
    write_cost_report,
)
from musicsweep.costs.summary import WorkerLifetime, summarize, write_cost_summary
from musicsweep.layout import SweepDir
from musicsweep.store.local import LocalStore
from musicsweep.store.pull import pull_results
from musicsweep.store.s3 import S3Store
from tests.fixtures.s3 import S3Bucket
from tests.helpers import wav_bytes


def row(job_id: str, generation_s: float | None, rate: float = 3.6) -> CostRow:
    cost = None if generation_s is None else marginal_cost_usd(generation_s, rate)
    return CostRow(
        f"clip_{job_id}.wav", "a prompt, with comma", 5.0, generation_s, cost, "tiny", 7, job_id, "h1", rate, 5.0
    )


def lifetime(launch: str, worker: int, start: float, end: float, rate: float = 3.6, **extra) -> dict:
    payload = {"launch_id": launch, "worker_id": worker, "host": "h1", "start": start, "end": end}
    return payload | {"hourly_cost_usd": rate} | extra


def test_report_has_the_scripts_columns_first_and_round_trips(tmp_path: Path) -> None:
    assert COLUMNS[:5] == ["s3_filename", "prompt", "requested_duration_s", "generation_time_s", "estimated_cost_usd"]
    assert {"model", "seed", "job_id", "host", "hourly_cost_usd", "audio_seconds"} <= set(COLUMNS)
    path = tmp_path / "cost_report.csv"
    write_cost_report([row("b", 2.0), row("a", None)], path)
    lines = read_cost_report(path)
    assert [line["job_id"] for line in lines] == ["a", "b"]
    assert lines[0]["generation_time_s"] == "" and lines[0]["estimated_cost_usd"] == ""
    assert lines[1]["prompt"] == "a prompt, with comma" and float(lines[1]["estimated_cost_usd"]) == 0.002


def test_a_resumed_clips_row_says_after_which_window(tmp_path: Path) -> None:
    path = tmp_path / "cost_report.csv"
    write_cost_report([replace(row("a", 9.0), resumed_from_window=3), row("b", 2.0)], path)
    assert [line["resumed_from_window"] for line in read_cost_report(path)] == ["3", ""]
    older = row("c", 1.0).to_dict()
    del older["resumed_from_window"]  # a row written before resuming existed
    assert CostRow.from_dict(older).resumed_from_window is None


def write_row(sweep: SweepDir, cost: CostRow) -> Path:
    path = sweep.folder("costs") / f"{cost.job_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cost.to_dict()))
    return path


def test_the_report_is_merged_incrementally_and_equals_a_full_rewrite(tmp_path: Path) -> None:
    sweep = SweepDir(tmp_path, "sw")
    rows = {job_id: replace(row(job_id, 1.0), prompt='say "hi",\nthen go') for job_id in ("b", "a", "c")}
    for cost in rows.values():
        write_row(sweep, cost)
    assert sorted(line["job_id"] for line in update_cost_report(sweep)) == ["a", "b", "c"]
    assert sweep.cost_report.read_text() == render_cost_report(list(rows.values()))
    stamp = sweep.cost_report.stat()
    assert stamp.st_mtime_ns < time.time_ns() - 1_000_000_000  # when its reading began, less the margin

    merge_cost_report(sweep)  # nothing new: not rewritten
    assert (sweep.cost_report.stat().st_ino, sweep.cost_report.stat().st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)

    rows["a"] = row("a", 9.0)
    path = write_row(sweep, rows["a"])
    os.utime(path, ns=(stamp.st_mtime_ns - 10**10,) * 2)  # an old mtime, but written (ctime) since
    rows["d"] = row("d", 2.0)
    write_row(sweep, rows["d"])
    del rows["c"]
    (sweep.folder("costs") / "c.json").unlink()
    merge_cost_report(sweep)
    assert sweep.cost_report.read_text() == render_cost_report(list(rows.values()))
    assert [line["job_id"] for line in read_cost_report(sweep.cost_report)] == ["a", "b", "d"]


def test_a_report_of_other_columns_is_rebuilt(tmp_path: Path) -> None:
    sweep = SweepDir(tmp_path, "sw")
    write_row(sweep, row("a", 1.0))
    sweep.cost_report.write_text("s3_filename,prompt\nclip_a.wav,old\n")  # an earlier version's
    os.utime(sweep.cost_report, ns=(time.time_ns() + 10**10,) * 2)
    assert update_cost_report(sweep)[0]["generation_time_s"] == "1.0"
    assert sweep.cost_report.read_text() == render_cost_report([row("a", 1.0)])


def test_summary_paid_beside_marginal() -> None:
    workers = [
        WorkerLifetime.from_dict(lifetime("L1", 0, 1000.0, 1100.0, model_load_s=10, generation_s=60, finished=True)),
        WorkerLifetime.from_dict(lifetime("L2", 0, 2000.0, 2050.0, model_load_s=10, generation_s=20)),
    ]
    summary = summarize(workers, [row("a", 60.0), row("b", 20.0), row("c", None)])
    assert summary.workers == 2 and summary.clips == 3
    assert summary.machine_s == 150.0 and summary.idle_s == 50.0
    assert summary.paid_usd == pytest.approx(0.15)  # 150 s at $3.60/h
    assert summary.marginal_usd == pytest.approx(0.08)
    assert summary.overhead_usd == pytest.approx(0.07)
    assert summary.overhead_fraction == pytest.approx(0.07 / 0.15)
    text = "\n".join(summary.lines())
    assert "paid: $0.150000" in text and "marginal: $0.080000 for 3 clip(s)" in text and "(47% of paid)" in text


def test_backend_override_replaces_a_workers_own_machine_time() -> None:
    workers = [
        WorkerLifetime.from_dict(lifetime("L1", 0, 0.0, 100.0)),
        WorkerLifetime.from_dict(lifetime("L1", 1, 0, 100)),
    ]
    spot = {("L1", 1): MachineTime(start=-60.0, end=130.0, hourly_cost_usd=0.36)}  # boot and shutdown billed too
    summary = summarize(workers, [], spot)
    assert summary.machine_s == 100.0 + 190.0
    assert summary.paid_usd == pytest.approx(0.1 + 190 * 0.36 / 3600)
    assert summary.overhead_fraction == 1.0


def test_free_hosts_have_no_overhead_fraction() -> None:
    summary = summarize([WorkerLifetime.from_dict(lifetime("L1", 0, 0, 10, rate=0.0))], [row("a", 1.0, rate=0.0)])
    assert summary.paid_usd == 0.0 and summary.overhead_fraction is None
    assert "of paid" not in "".join(summary.lines())


def test_write_cost_summary_reads_pulled_folders(tmp_path: Path) -> None:
    sweep = SweepDir(tmp_path, "sw")
    (sweep.root / "workers").mkdir(parents=True)
    (sweep.root / "costs").mkdir()
    (sweep.root / "workers" / "worker_0.L1.json").write_text(json.dumps(lifetime("L1", 0, 0, 36)))
    (sweep.root / "costs" / "a.json").write_text(json.dumps(row("a", 18.0).to_dict()))
    summary = write_cost_summary(sweep)
    saved = json.loads(sweep.cost_summary.read_text())
    assert saved["paid_usd"] == pytest.approx(0.036) and saved["marginal_usd"] == pytest.approx(0.018)
    assert saved["overhead_usd"] == pytest.approx(summary.overhead_usd)


def s3_store(bucket: S3Bucket) -> S3Store:
    return S3Store(StoreConfig(bucket.url, endpoint_url=bucket.server.endpoint_url, region="us-east-1"))


def count_gets(store: S3Store) -> list[str]:
    keys: list[str] = []
    store.client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: keys.append(params["Key"])
    )
    return keys


def test_pull_downloads_only_what_is_missing_or_changed(moto_bucket: S3Bucket, tmp_path: Path) -> None:
    store = s3_store(moto_bucket)
    sweep = SweepDir(tmp_path / "runs", "sw")
    store.put_bytes("sw/audio/a_1.wav", wav_bytes(b"A"))
    store.put_bytes("sw/audio/b_2.wav", wav_bytes(b"B"))
    store.put_json("sw/costs/1.json", row("1", 2.0).to_dict())
    store.put_bytes("sw/claims/1.L1", b"owner")  # claims stay in the store
    gets = count_gets(store)

    assert pull_results(store, sweep) == 3
    assert sorted(Path(key).name for key in gets) == ["1.json", "a_1.wav", "b_2.wav"]
    assert not (sweep.root / "claims").exists()
    assert pull_results(store, sweep) == 0  # nothing new: no download at all

    store.put_bytes("sw/audio/b_2.wav", wav_bytes(b"C"))  # same size, new ETag
    (sweep.root / "audio" / "a_1.wav").write_bytes(wav_bytes(b"A")[:40])  # truncated local copy
    gets.clear()
    assert pull_results(store, sweep) == 2
    assert (sweep.root / "audio" / "b_2.wav").read_bytes() == wav_bytes(b"C")
    assert (sweep.root / "audio" / "a_1.wav").read_bytes() == wav_bytes(b"A")

    (sweep.root / "audio" / "a_1.wav").unlink()
    assert pull_results(store, sweep) == 1
    merge_cost_report(sweep)
    assert [line["job_id"] for line in read_cost_report(sweep.cost_report)] == ["1"]


def test_pull_adopts_identical_local_files_and_never_replaces_a_local_log(
    moto_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = s3_store(moto_bucket)
    sweep = SweepDir(tmp_path / "runs", "sw")
    store.put_bytes("sw/audio/a_1.wav", wav_bytes(b"A"))
    store.put_bytes("sw/logs/worker_0.log", b"line 1\n")
    (sweep.root / "audio").mkdir(parents=True)
    (sweep.root / "logs").mkdir()
    (sweep.root / "audio" / "a_1.wav").write_bytes(wav_bytes(b"A"))  # already here, same MD5
    live_log = sweep.root / "logs" / "worker_0.log"
    live_log.write_bytes(b"line 1\nline 2 of a local worker still running\n")
    gets = count_gets(store)
    assert pull_results(store, sweep) == 0 and gets == []
    assert live_log.read_bytes().endswith(b"still running\n")

    store.put_bytes("sw/logs/worker_1.log", b"remote host log\n")
    assert pull_results(store, sweep) == 1
    store.put_bytes("sw/logs/worker_1.log", b"remote host log\nmore\n")
    assert pull_results(store, sweep) == 1  # a log this module pulled is refreshed
    assert (sweep.root / "logs" / "worker_1.log").read_bytes().endswith(b"more\n")


def test_pull_from_a_local_store_in_place_copies_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "runs")
    sweep = SweepDir(tmp_path / "runs", "sw")
    store.put_bytes("sw/audio/a_1.wav", b"A")
    assert pull_results(store, sweep) == 0


def test_paid_counts_machines_that_never_wrote_a_lifetime() -> None:
    assert summarize([], [], {("L1", 0): MachineTime(0.0, 3600.0, 1.0)}).paid_usd == pytest.approx(1.0)


def test_a_half_pulled_row_is_left_out_until_it_is_whole(tmp_path: Path) -> None:
    """A store outage mid-download leaves an empty row file: the report skips it (auto_pull must not
    crash), and takes it once the next pull has it whole."""
    sweep = SweepDir(tmp_path, "sw")
    write_row(sweep, row("a", 1.0))
    torn = write_row(sweep, row("b", 2.0))
    torn.write_text("")
    assert [line["job_id"] for line in update_cost_report(sweep)] == ["a"]
    write_row(sweep, row("b", 2.0))
    assert sorted(line["job_id"] for line in update_cost_report(sweep)) == ["a", "b"]
