"""Orchestration at scale: dry run, launch, one poll and cancel of 1k/10k/100k-clip sweeps (local backend).

    uv run python benchmarks/scale.py [--clips 1000 10000 100000] [--repeat 3] [--done 0.53]

Each size runs in a child process of its own (so its peak memory is its own), in a temporary
folder with a local store, the local backend and 4 workers of the tiny model. Per size it measures:
- `dry run`: `run_sweep(dry_run=True)` on an empty store, its output captured (past 100 clips that
  includes writing `plan.tsv`);
- `launch`: `run_sweep(yes=True)`: plan, specs, manifest, scripts and the start of 4 worker
  processes, which are cancelled at once (before they have imported torch, so none generates);
- then `--done` of the clips are written as finished by hand, as a worker delivers them (WAV of the
  clip's exact size, cost row, then `.done`; the `.pid` of its exited worker), without generating
  audio, and 1% more as running (a `.pid` of a live `sleep` in a process group of its own);
- `status`: `musicsweep status` (one poll: the backend's probe, the store's markers, the table);
- `pull round`: one round of `musicsweep pull` (`sweep.follow`: observe, act (pull, cost report),
  the round's display), stopped before it settles; the first round of a process is shown apart from
  the next ones (`--repeat` rounds in all), since a round may keep what it read for the next;
- `cancel`: `musicsweep cancel` (the probe, and the one live group killed);
- `re-run dry run`: `run_sweep(dry_run=True)` again, over the launched sweep with many clips done;
- peak memory (max RSS) of the child process over all of the above.
Dry runs, polls and pull rounds are repeated `--repeat` times (medians shown, min beside); launch and cancel run
once. The load average is printed before and after, since the host is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicsweep.cli.display import SweepProgress  # noqa: E402
from musicsweep.cli.main import main as musicsweep_main  # noqa: E402
from musicsweep.cli.run import run_sweep  # noqa: E402
from musicsweep.config import parse_config  # noqa: E402
from musicsweep.costs.rows import CostRow  # noqa: E402
from musicsweep.layout import JobPaths, SweepDir  # noqa: E402
from musicsweep.store.verify import expected_wav_size  # noqa: E402
from musicsweep.sweep.follow import FollowOptions, Round, follow  # noqa: E402
from musicsweep.sweep.launched import open_launched  # noqa: E402
from musicsweep.sweep.plan import jobs_from_variants  # noqa: E402

WORKERS = 4
DEAD_PID = 2**22 + 1  # above the default pid_max: never a live process
DURATION_S = 2.0
RUNNING_SHARE = 0.01  # clips a live worker holds while the sweep is polled, so following goes on


def variants(count: int) -> list[dict]:
    return [{"prompt": f"bench prompt {index % 97}", "duration_s": DURATION_S, "seed": index} for index in range(count)]


def timed(action) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        action()
    return time.perf_counter() - started


def write_finished(sweep: SweepDir, count: int, share: float, live_pid: int) -> int:
    """Deliver `share` of the sweep's clips as a worker does: WAV (exact size), cost row, `.done`;
    the next RUNNING_SHARE of them read as running, on the live process group `live_pid`."""
    jobs = jobs_from_variants(variants(count), sweep.name)
    finished = jobs[: int(len(jobs) * share)]
    for job in jobs[len(finished) : len(finished) + int(len(jobs) * RUNNING_SHARE)]:
        sweep.job(job).pid.write_text(f"{live_pid} {live_pid}\n")
    size = expected_wav_size(DURATION_S)
    for job in finished:
        paths = JobPaths.of(job, sweep.root)
        audio = sweep.sweeps_dir / paths.audio_key
        audio.parent.mkdir(parents=True, exist_ok=True)
        with open(audio, "wb") as handle:
            handle.truncate(size)
        row = CostRow(
            job.output_name,
            job.prompt,
            DURATION_S,
            0.5,
            0.0,
            job.model,
            job.seed,
            job.job_id,
            "localhost",
            0.0,
            DURATION_S,
        )
        cost = sweep.sweeps_dir / paths.cost_key
        cost.parent.mkdir(parents=True, exist_ok=True)
        cost.write_text(json.dumps(row.to_dict()))
        done = sweep.sweeps_dir / paths.done_key
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(f"{time.time()}\n")
        sweep.job(job).pid.write_text(f"{DEAD_PID} {DEAD_PID}\n")  # the worker's, long gone
    return len(finished)


def pull_rounds(name: str, rounds: int) -> list[float]:
    """The time of each of `rounds` rounds of one `musicsweep pull` process, as it shows them."""
    sweep, manifest, config, backend = open_launched(name)
    events = follow(sweep, manifest, config, backend, FollowOptions(interval_s=0.0))
    times = []
    with contextlib.redirect_stdout(io.StringIO()), SweepProgress(sweep.name) as progress:
        started = time.perf_counter()
        for event in events:
            if isinstance(event, Round):
                progress.update(event.states, event.hosts, event.throughput)
                times.append(time.perf_counter() - started)
                if len(times) == rounds:
                    break
                started = time.perf_counter()
    events.close()
    return times


def one_size(count: int, repeat: int, share: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sweeps = folder / "sweeps"
        raw = {
            "backend": "local",
            "store": {"url": str(sweeps)},
            "sweeps_dir": str(sweeps),
            "backends": {"local": {"workers": WORKERS}},
        }
        (folder / "musicsweep.yaml").write_text(json.dumps(raw))
        config = parse_config(raw, "benchmark", folder)
        os.chdir(folder)
        name = f"scale{count}"
        dry = [timed(lambda: run_sweep(variants(count), name, config, dry_run=True)) for _ in range(repeat)]
        launch = timed(lambda: run_sweep(variants(count), name, config, yes=True))
        musicsweep_main(["cancel", name])  # the 4 workers, before they import torch
        worker = subprocess.Popen(["sleep", "3600"], start_new_session=True)  # `cancel` stops it
        done = write_finished(SweepDir(sweeps, name), count, share, worker.pid)
        status = [timed(lambda: musicsweep_main(["status", name])) for _ in range(repeat)]
        rounds = pull_rounds(name, max(2, repeat + 1))
        cancel = timed(lambda: musicsweep_main(["cancel", name]))
        worker.wait()
        rerun = [timed(lambda: run_sweep(variants(count), name, config, dry_run=True)) for _ in range(repeat)]
    return {
        "clips": count,
        "done": done,
        "dry_run": dry,
        "launch": launch,
        "status": status,
        "pull_first": rounds[0],
        "pull_next": rounds[1:],
        "cancel": cancel,
        "rerun_dry_run": rerun,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def figure(values: list[float] | float) -> str:
    if isinstance(values, float):
        return f"{values:.2f} s"
    return f"{statistics.median(values):.2f} s (min {min(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--done", type=float, default=0.53, help="share of clips finished before the poll")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.repeat, args.done)))
        return
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for count in args.clips:
        command = [
            sys.executable,
            __file__,
            "--one",
            str(count),
            "--repeat",
            str(args.repeat),
            "--done",
            str(args.done),
        ]
        result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print(
            f"{count} clips ({result['done']} done before the poll): dry run {figure(result['dry_run'])}, "
            f"launch {figure(result['launch'])}, status {figure(result['status'])}, "
            f"pull round first {figure(result['pull_first'])} then {figure(result['pull_next'])}, "
            f"cancel {figure(result['cancel'])}, "
            f"re-run dry run {figure(result['rerun_dry_run'])}, peak {result['peak_mib']:.0f} MiB"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
