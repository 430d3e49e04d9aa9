"""Pulling results (musicsweep/store/pull.py, tempfiles.py): no torn WAV kept, no temporary left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicsweep.layout import SweepDir, WorkerPaths
from musicsweep.store.local import LocalStore
from musicsweep.store.pull import pull_results
from musicsweep.store.tempfiles import pull_temp_path, remove_stale_pull_temps
from musicsweep.worker.loop import upload_log
from tests.helpers import wav_bytes


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


class OffHostStore(LocalStore):
    """A folder that the sweep folder does not mirror, as a bucket: workers upload, pulls copy."""

    def local_path(self, key: str) -> Path | None:
        return None


def test_each_attempts_log_is_uploaded_under_its_own_key_and_pulled(tmp_path: Path) -> None:
    """Worker 0 relaunched on a fresh host: the second attempt's log lands beside the first's."""
    store, sweep = OffHostStore(tmp_path / "bucket"), SweepDir(tmp_path / "runs", "s")
    for launch in ("L1", "L2"):
        host_log = tmp_path / launch / "worker_0.log"  # where that host's script wrote it
        host_log.parent.mkdir()
        host_log.write_text(f"attempt {launch}\n")
        upload_log(store, WorkerPaths(tmp_path / launch, "s", 0, launch), str(host_log))
    assert sorted(store.list("s/logs/")) == ["s/logs/worker_0.L1.log", "s/logs/worker_0.L2.log"]
    assert pull_results(store, sweep) == 2
    assert [sweep.worker(0, launch).log.read_text() for launch in ("L1", "L2")] == ["attempt L1\n", "attempt L2\n"]


def test_pull_keeps_no_torn_wav_and_auto_pull_counts_it_failed(
    moto_bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from musicsweep.config import StoreConfig
    from musicsweep.layout import SweepDir
    from musicsweep.manifest import JobEntry, Manifest
    from musicsweep.store.pull import pull_results
    from musicsweep.store.s3 import S3Store
    from musicsweep.sweep.follow import unwhole_clips

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
