"""Units of issue 17: the outage budget, WAV completeness, the spool, per-spec loading, pull temporaries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from musicsweep.job import Job
from musicsweep.store.local import LocalStore
from musicsweep.store.retry import RetryingStore, StoreUnreachable, is_transient
from musicsweep.store.tempfiles import pull_temp_path, remove_stale_pull_temps
from musicsweep.store.verify import expected_wav_size, stored_wav_problem, wav_problem
from musicsweep.worker.specs import load_specs
from musicsweep.worker.spool import Spool
from tests.helpers import wav_bytes


class FlakyStore(LocalStore):
    """A local store whose `info` fails `failures` times with a connection error first."""

    def __init__(self, root: Path, failures: int, error: Exception | None = None) -> None:
        super().__init__(root)
        self.failures, self.calls = failures, 0
        self.error = error or EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    def info(self, key: str):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return super().info(key)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def retrying(inner, budget: float, lines: list[str], clock: FakeClock) -> RetryingStore:
    return RetryingStore(inner, budget, lines.append, sleep=clock.sleep, clock=clock)


def test_outage_shorter_than_the_budget_is_ridden_out(tmp_path: Path) -> None:
    clock, lines = FakeClock(), []
    store = retrying(FlakyStore(tmp_path, failures=6), 300, lines, clock)
    assert store.info("missing") is None
    assert store.inner.calls == 7
    retries = [line for line in lines if line.startswith("store unreachable, retrying (")]
    assert len(retries) == 6
    assert retries[-1].startswith("store unreachable, retrying (16 s so far): info missing: EndpointConnectionError")
    assert lines[-1] == "store reachable again after 26 s"


def test_outage_past_the_budget_raises_and_the_budget_is_shared(tmp_path: Path) -> None:
    clock, lines = FakeClock(), []
    store = retrying(FlakyStore(tmp_path, failures=10**6), 20, lines, clock)
    with pytest.raises(StoreUnreachable, match=r"unreachable for 20 s \(store.outage_budget_s is 20\) during info a"):
        store.info("a")
    calls = store.inner.calls
    with pytest.raises(StoreUnreachable):  # the same outage: no fresh budget for the next call
        store.info("b")
    assert store.inner.calls == calls + 1


def test_refused_requests_are_not_retried(tmp_path: Path) -> None:
    denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject")
    clock, lines = FakeClock(), []
    store = retrying(FlakyStore(tmp_path, failures=1, error=denied), 300, lines, clock)
    with pytest.raises(ClientError):
        store.info("a")
    assert lines == [] and store.inner.calls == 1
    unavailable = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "Put")
    assert is_transient(unavailable) and not is_transient(OSError(28, "No space left on device"))


def job(duration_s: float = 0.5) -> Job:
    return Job("sw", "lofi piano", duration_s, "tiny", 1, "lofi")


def test_a_wav_counts_only_when_whole_and_of_the_jobs_length(tmp_path: Path) -> None:
    frames = 16000
    whole = wav_bytes(frames=frames)
    assert len(whole) == expected_wav_size(0.5)
    assert wav_problem(whole[:4096], len(whole), 0.5) is None
    assert wav_problem(whole[:4096], 32768, 0.5) == "32768 bytes, but its header declares 32044"
    assert wav_problem(whole[:4096], len(whole), 0.6) == (
        "16000 frames at 32000 Hz x 1 ch, expected 19200 frames at 32000 Hz mono"
    )
    assert wav_problem(b"garbage", 7, 0.5) == "no WAV header"
    store = LocalStore(tmp_path)
    store.put_bytes("sw/audio/a.wav", whole[:20000])  # a partial object under the full key
    assert stored_wav_problem(store, "sw/audio/a.wav", 0.5) == "20000 bytes, but its header declares 32044"
    assert stored_wav_problem(store, "sw/audio/none.wav", 0.5) == "missing"


def test_spool_keeps_whole_clips_and_drops_broken_ones(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    clip = job()
    spool.put(clip, wav_bytes(frames=16000), 1.25, 4, resumed_from=3)
    entry = spool.get(clip)
    # what its cost row needs, for whichever worker uploads it: a resumed clip's row says so
    assert entry is not None and (entry.generation_time_s, entry.batch_size, entry.resumed_from_window) == (1.25, 4, 3)
    record = tmp_path / "spool" / f"{clip.output_name}.json"
    record.write_text('{"generation_time_s": 1.25, "batch_size": 4}')  # an older worker's entry
    assert spool.get(clip).resumed_from_window is None
    entry.wav.write_bytes(wav_bytes(frames=16000)[:1000])  # torn
    assert spool.get(clip) is None and list((tmp_path / "spool").iterdir()) == []


def test_a_truncated_spec_fails_only_its_own_job(tmp_path: Path) -> None:
    import cloudpickle

    paths = []
    for seed in range(3):
        good = Job("sw", "lofi piano", 1.0, "tiny", seed, "lofi")
        path = tmp_path / "jobs" / f"{good.job_id}.pkl"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(cloudpickle.dumps(good))
        paths.append(path)
    paths[1].write_bytes(paths[1].read_bytes()[:20])
    loaded = load_specs(paths)
    assert [j.seed for j in loaded.jobs] == [0, 2]
    assert list(loaded.broken) == [paths[1].stem]
    reason = loaded.broken[paths[1].stem]
    assert reason.startswith(f"{paths[1]}: cannot load job spec: ") and "\n" not in reason


def test_a_killed_pulls_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    script = "import sys, os, signal; from pathlib import Path; from musicsweep.store.tempfiles import pull_temp_path; "
    script += "p = pull_temp_path(Path(sys.argv[1])); p.write_bytes(b'half'); os.kill(os.getpid(), signal.SIGKILL)"
    subprocess.run([sys.executable, "-c", script, str(audio / "a.wav")], check=False)
    live = pull_temp_path(audio / "b.wav")  # this process: a pull that is still running... is us
    worker_tmp = audio / ".c.wav.abcd1234.tmp"  # a local worker's atomic write: never touched
    live.write_bytes(b"x")
    worker_tmp.write_bytes(b"x")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        running = audio / f".d.wav.pull-{other.pid}-0123abcd.tmp"
        running.write_bytes(b"x")
        assert remove_stale_pull_temps(tmp_path) == 2  # the killed one, and our own leftover
        assert sorted(p.name for p in audio.iterdir()) == sorted([worker_tmp.name, running.name])
    finally:
        other.kill()
        other.wait()
    assert os.path.exists(running)


def test_pull_keeps_no_torn_wav_and_auto_pull_counts_it_failed(
    moto_bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from musicsweep.cli.auto_pull import unwhole_clips
    from musicsweep.config import StoreConfig
    from musicsweep.layout import SweepDir
    from musicsweep.manifest import JobEntry, Manifest
    from musicsweep.store.pull import pull_results
    from musicsweep.store.s3 import S3Store

    store = S3Store(StoreConfig(moto_bucket.url, endpoint_url=moto_bucket.server.endpoint_url, region="us-east-1"))
    sweep = SweepDir(tmp_path / "runs", "sw")
    store.put_bytes("sw/audio/torn_1.wav", wav_bytes(frames=16000)[:20000])
    store.put_bytes("sw/audio/whole_2.wav", wav_bytes(frames=16000))
    store.put_bytes("sw/markers/1.done", b"")
    assert pull_results(store, sweep) == 2  # the whole WAV and the marker
    assert sorted(p.name for p in sweep.audio.iterdir()) == ["whole_2.wav"]
    assert "sw/audio/torn_1.wav: incomplete in the store: 20000 bytes, its header declares 32044" in caplog.text
    manifest = Manifest(jobs={"1": JobEntry(output_name="torn_1.wav"), "2": JobEntry(output_name="whole_2.wav")})
    assert unwhole_clips(sweep, manifest, {"1": "done", "2": "done"}) == {"1": "not pulled"}
    assert pull_results(store, sweep) == 0  # tried again, still not kept
