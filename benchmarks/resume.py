"""Resume benchmark (issue 19): a 300 s tiny-model clip killed at about 80% of its windows, then re-run.

    uv run python benchmarks/resume.py               # 3 repeats
    uv run python benchmarks/resume.py --repeats 5

Every run is a real sweep of one clip on the local backend and store, in a temporary project
folder. Each repeat takes turns: the clip uninterrupted, then the clip killed with SIGKILL right
after the checkpoint of window 13 of 16 (the worker's test hook), then that sweep re-run. The
figure is time(re-run) / time(uninterrupted) in generation time, the worker's own `batch of 1 x
300s in T s` (reading the checkpoint, the windows left, the decode of the whole clip): that is what
a preemption costs on a paid GPU beyond the worker's fixed start. The process wall times (launch,
torch import, model load) are printed beside it. Target: at most 0.3 (before resuming: about 1.0).
Results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from timing import describe_host

from musicsweep import VariantGenerator, run_sweep
from musicsweep.config import load_config
from musicsweep.contract import TEST_KILL_AT
from musicsweep.costs.continuation import WINDOW_S, windows_s
from musicsweep.layout import SweepDir
from tests.helpers import batch_seconds, wait_for_exit, window_lines

CONFIG = """backend: local
store: ./runs
sweeps_dir: ./runs
engine:
  batch_size: 1
backends:
  local:
    workers: 1
"""
ROW = "{:>6} {:>11} {:>12} {:>6} {:>12} {:>13}"


def launch(name: str, duration_s: float, kill_at: str = "") -> tuple[float, str]:
    """One sweep of one clip through a real worker; returns its wall time and this launch's log."""
    vg = VariantGenerator()
    vg.add("prompt", ["lofi hip hop with warm piano"])
    vg.add("duration_s", [duration_s])
    vg.add("seed", [7])
    if kill_at:
        os.environ[TEST_KILL_AT] = kill_at
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the plan, printed at every launch
            run_sweep(vg, name=name)
    finally:
        os.environ.pop(TEST_KILL_AT, None)
    sweep = SweepDir(load_config().sweeps_dir, name)
    wait_for_exit(int(sweep.worker(0).pid.read_text()), 1800)
    return time.perf_counter() - started, sweep.worker(0, sweep.read_manifest().launch_ids()[-1]).log.read_text()


def generation_s(log_text: str, run: str) -> float:
    """The one batch's generation time in a launch's log."""
    seconds = batch_seconds(log_text)
    if len(seconds) != 1:
        sys.exit(f"error: the {run} run logged {len(seconds)} batches, not 1")
    return seconds[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=300.0)
    parser.add_argument("--kill-at", type=float, default=0.8, help="share of the windows done before the kill")
    args = parser.parse_args(argv)
    if args.repeats < 1 or not 0 < args.kill_at < 1 or args.duration_s <= WINDOW_S:
        parser.error(f"need --repeats >= 1, 0 < --kill-at < 1 and --duration-s > {WINDOW_S:g}: more than one window")
    total = len(windows_s(args.duration_s))
    kill_after = max(1, min(total - 1, round(args.kill_at * total)))
    print(f"host: {describe_host()}")
    print(f"{args.duration_s:g} s clip, {total} windows, killed after window {kill_after}; {args.repeats} repeats")
    print(ROW.format("repeat", "whole gen s", "re-run gen s", "ratio", "whole wall s", "re-run wall s"))
    ratios, wall_ratios = [], []
    with tempfile.TemporaryDirectory(prefix="resume-bench-") as folder:
        os.chdir(folder)
        Path("musicsweep.yaml").write_text(CONFIG)
        os.environ["MUSICSWEEP_CONFIG"] = str(Path(folder, "musicsweep.yaml"))
        os.environ["XDG_CACHE_HOME"] = folder  # the estimate's history stays the user's own
        for repeat in range(1, args.repeats + 1):
            whole_wall, whole_log = launch(f"whole-{repeat}", args.duration_s)
            launch(f"killed-{repeat}", args.duration_s, kill_at=f"window{kill_after}")
            rerun_wall, rerun_log = launch(f"killed-{repeat}", args.duration_s)
            windows = window_lines(rerun_log)
            if windows != [f"{i}/{total}" for i in range(kill_after + 1, total + 1)]:
                sys.exit(f"error: the re-run generated windows {windows}, not {kill_after + 1} to {total}")
            whole, rerun = generation_s(whole_log, "whole"), generation_s(rerun_log, "re-run")
            ratios.append(rerun / whole)
            wall_ratios.append(rerun_wall / whole_wall)
            figures = (f"{whole:.2f}", f"{rerun:.2f}", f"{rerun / whole:.3f}", f"{whole_wall:.1f}", f"{rerun_wall:.1f}")
            print(ROW.format(repeat, *figures))
    print(f"median time(re-run) / time(uninterrupted): generation {statistics.median(ratios):.3f} (target <= 0.3),")
    print(f"process wall time {statistics.median(wall_ratios):.3f}; host after: {describe_host()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
