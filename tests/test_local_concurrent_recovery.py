"""Two recovery commands at once: `auto_pull --relaunch-failed` twice on one sweep, just after its
worker was SIGKILLed, on a folder store and on S3 (moto_server).

The launch lock serializes the two relaunches, and the second one judges again under it: it sees
the first one's launch and starts nothing. Counted from what is paid for: the launch records, the
workers' starts and their `generated NAME` lines.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from musicsweep.config import load_config
from musicsweep.contract import TEST_KILL_AT
from musicsweep.store import open_store
from musicsweep.sweep.plan import jobs_from_variants
from tests.helpers import (
    assert_intact,
    clips,
    exit_statuses,
    launch_and_wait,
    set_recovery,
    sweep_dir,
    worker_log,
    write_local_config,
    write_s3_config,
)

pytestmark = pytest.mark.e2e


def start_pull(project: Path, name: str, index: int) -> tuple[subprocess.Popen, Path]:
    out = project / f"pull_{index}.log"
    with open(out, "wb") as handle:
        command = [sys.executable, "-m", "musicsweep.auto_pull", name, "--relaunch-failed", "--interval", "0.5"]
        command += ["--orphan-grace", "0"]
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT), out


@pytest.mark.parametrize("store", ["folder", "moto"])
def test_two_relaunches_at_once_start_one_worker(
    project: Path, store: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store == "moto":
        bucket = request.getfixturevalue("moto_bucket")
        write_s3_config(project, bucket.url, bucket.server.endpoint_url, batch_size=2)
    else:
        write_local_config(project, "./runs", batch_size=2)
    set_recovery(project, backoff_s=0)
    name, vg = "twice", clips(4, 1)
    jobs = jobs_from_variants(vg.variants(), name)
    monkeypatch.setenv(TEST_KILL_AT, "load")  # SIGKILLed before its model load: one model load per case, not two
    launch_and_wait(vg, name)
    monkeypatch.delenv(TEST_KILL_AT)

    pulls = [start_pull(project, name, index) for index in range(2)]
    try:
        assert [process.wait(timeout=300) for process, _ in pulls] == [0, 0], [o.read_text() for _, o in pulls]
    finally:
        for process, _ in pulls:
            process.kill()
            process.wait()
    printed = [out.read_text() for _, out in pulls]
    assert sum(text.count("relaunched 4 job(s)") for text in printed) == 1, printed
    assert not any("Traceback" in text for text in printed)
    assert [record.jobs for record in sweep_dir(name).read_manifest().launches] == [4, 4]
    text = worker_log(name)
    assert text.count("] worker 0/1 on ") == 2, "the killed worker and one relaunched worker"
    assert exit_statuses(text)[0] == 128 + signal.SIGKILL  # the second may end by the orphan kill (grace 0)
    assert_intact(open_store(load_config().store), jobs, text)
