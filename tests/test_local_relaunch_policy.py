"""The relaunch policy end to end on the local backend: `--relaunch-failed` relaunches only what no
live worker of the sweep can take (musicsweep/sweep/takers.py).

Two workers; worker 1 is SIGKILLed before it generates anything. Worker 0 is live and takes clips
of the whole sweep, so auto_pull leaves worker 1's failed clips to it instead of starting a third
worker: one launch in all, every clip generated once.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from musicsweep import run_sweep
from musicsweep.cli.pull import pull
from musicsweep.layout import SweepDir
from tests.fixtures.servers import wait_until
from tests.helpers import generated_names, latest_log, wait_for_exit

pytestmark = pytest.mark.e2e


def test_failed_clips_go_to_the_live_worker_not_to_a_new_one(project: Path, capsys: pytest.CaptureFixture) -> None:
    (project / "musicsweep.yaml").write_text(
        "backend: local\nstore: ./runs\nsweeps_dir: ./runs\nengine:\n  batch_size: 1\n"
        "backends:\n  local:\n    workers: 2\n    hourly_cost_usd: 0.5\nrecovery:\n  backoff_s: 0\n"
    )
    variants = [{"prompt": f"policy {i}", "duration_s": 1, "model": "tiny", "seed": i} for i in range(4)]
    run_sweep(variants, name="policy")
    sweep = SweepDir(project / "runs", "policy")
    launch = sweep.read_manifest().launches[0].id
    os.killpg(int(sweep.worker(1).pid.read_text()), signal.SIGKILL)
    beat = sweep.root / "markers" / f"worker_0.{launch}.heartbeat"
    wait_until(beat.exists, 120, "worker 0's first heartbeat")  # live before auto_pull judges

    assert pull("policy", interval_s=0.5, relaunch_failed=True, orphan_grace_s=0) == 0
    wait_for_exit(int(sweep.worker(0).pid.read_text()))
    out = capsys.readouterr().out
    assert (
        "relaunched 2 job(s)" not in out
    )  # "not relaunched, left to the sweep's live workers: ..." when it judged them
    assert [record.jobs for record in sweep.read_manifest().launches] == [4], "no worker started for them"
    made = Counter(generated_names(latest_log(sweep, 0).read_text()))
    killed = latest_log(sweep, 1)
    assert sorted(made.values()) == [1, 1, 1, 1] and (not killed.exists() or "generated" not in killed.read_text())
