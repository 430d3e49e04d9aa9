"""A fleet with one slow worker: fixed shards against dynamic assignment (`worker/pool.py`), local backend.

    uv run python benchmarks/fleet.py [--clips 12] [--duration 2] [--repeat 3]

Runs, interleaved and repeated, in temporary project folders (local store, tiny model, batch size 1):
- `single`: one worker makes every clip (its generation time is the yardstick);
- `fixed`: two workers with `worker.take_from_others: false` (each makes only its own shard);
- `dynamic`: two workers with dynamic assignment (the default).
In the two-worker runs, worker 1 runs at a quarter of its speed (SIGSTOP/SIGCONT duty cycle on its
process group). Model loading is left out: each worker is paused once it has loaded its model
until every worker has, and the clock starts then; it stops when the last `.done` is in the store.
Ideal = the median single-worker time / combined speed (1 + 0.25). Per run: wall time, its ratio
to the ideal, each worker's share of the clips, and whether every clip was generated exactly once
(the workers' `generated NAME` lines). The load average is printed before and after (shared host).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicsweep.cli.run import run_sweep  # noqa: E402
from musicsweep.layout import SweepDir  # noqa: E402
from tests.helpers import LOADED, DutyCycle, generated_names, wait_for_exit  # noqa: E402

SHARE = 0.25  # the slow worker's speed
MODES = ("single", "fixed", "dynamic")


def config_text(workers: int, take_from_others: bool) -> str:
    return (
        "backend: local\nstore: ./runs\nsweeps_dir: ./runs\nengine:\n  batch_size: 1\n"
        f"worker:\n  take_from_others: {str(take_from_others).lower()}\n"
        f"backends:\n  local:\n    workers: {workers}\n    hourly_cost_usd: 0.5\n"
    )


def start_together(groups: list[int], logs: list[Path]) -> None:
    """Pause each worker group once it has loaded its model; continue them all once every one has."""
    waiting = dict(zip(groups, logs, strict=True))
    while waiting:
        for group, log in list(waiting.items()):
            if log.exists() and LOADED in log.read_text():
                os.killpg(group, signal.SIGSTOP)
                del waiting[group]
        time.sleep(0.02)
    for group in groups:
        os.killpg(group, signal.SIGCONT)


def one_run(mode: str, clips: int, duration_s: float) -> dict:
    workers = 1 if mode == "single" else 2
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        Path("musicsweep.yaml").write_text(config_text(workers, mode != "fixed"))
        os.environ["MUSICSWEEP_CONFIG"] = str(Path(tmp) / "musicsweep.yaml")
        variants = [{"prompt": f"fleet {i}", "duration_s": duration_s, "seed": i} for i in range(clips)]
        with contextlib.redirect_stdout(io.StringIO()):
            run_sweep(variants, name="fleet")
        sweep = SweepDir(Path(tmp) / "runs", "fleet")
        groups = [int(sweep.worker(worker).pid.read_text()) for worker in range(workers)]
        launch_id = sweep.read_manifest().launch_ids()[-1]
        logs = [sweep.worker(worker, launch_id).log for worker in range(workers)]
        markers = sweep.folder("markers")
        cycle = DutyCycle(groups[-1], SHARE) if workers == 2 else None
        try:
            start_together(groups, logs)
            started = time.monotonic()
            if cycle is not None:
                cycle.start()
            while sum(1 for name in os.listdir(markers) if name.endswith(".done")) < clips:
                time.sleep(0.02)
            wall = time.monotonic() - started
        finally:
            if cycle is not None:
                cycle.done.set()
                cycle.join()
                cycle.signal(signal.SIGCONT)
        for group in groups:
            wait_for_exit(group, timeout_s=120)
        made = [generated_names(log.read_text()) for log in logs]
    counts = Counter(name for names in made for name in names)
    once = len(counts) == clips and set(counts.values()) == {1}
    return {"mode": mode, "wall": wall, "shares": [len(names) / clips for names in made], "once": once}


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ |= {"HF_HUB_OFFLINE": "1", "MUSICSWEEP_HEARTBEAT_S": "2"}
    print(f"load average before: {load()}")
    runs: list[dict] = []
    for round_ in range(args.repeat):
        for mode in MODES[round_ % 3 :] + MODES[: round_ % 3]:  # interleaved, each mode first once
            run = one_run(mode, args.clips, args.duration)
            runs.append(run)
            shares = " ".join(f"{share:.2f}" for share in run["shares"])
            print(f"{mode:8} wall {run['wall']:6.1f}s  shares {shares}  each clip once: {run['once']}", flush=True)
    ideal = statistics.median(run["wall"] for run in runs if run["mode"] == "single") / (1 + SHARE)
    print(f"ideal (median single-worker time / {1 + SHARE:g}): {ideal:.1f}s")
    for mode in MODES[1:]:
        mine = [run for run in runs if run["mode"] == mode]
        wall = statistics.median(run["wall"] for run in mine)
        slow = statistics.median(run["shares"][1] for run in mine)
        once = all(run["once"] for run in mine)
        print(f"{mode:8} median wall {wall:.1f}s = {wall / ideal:.2f}x ideal; slow share {slow:.2f}; once: {once}")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
