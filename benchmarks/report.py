"""Time the listening report for 200 synthetic clips (target: under 30 s on 2 cores).

    uv run python benchmarks/report.py [--clips 200] [--workers N]

The clips (20 prompts x 2 models x 5 durations of 5-30 s by default) are written first, untimed;
then `write_report` runs from a cold start (no images yet), and again warm (images kept). On a
shared machine the wall time includes other load, so the CPU seconds are printed too.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicsweep.report.build import write_report  # noqa: E402
from tests.synthetic_sweep import FakeClip, write_synthetic_sweep  # noqa: E402

DURATIONS = (5, 10, 15, 20, 30)
MODELS = ("tiny", "small")


def synthetic_clips(count: int) -> list[FakeClip]:
    per_prompt = len(DURATIONS) * len(MODELS)
    return [
        FakeClip({"prompt": f"prompt number {i // per_prompt}", "duration_s": duration, "model": model, "seed": i})
        for i, (model, duration) in enumerate(
            (MODELS[(j // len(DURATIONS)) % len(MODELS)], DURATIONS[j % len(DURATIONS)]) for j in range(count)
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None, help="image processes (default: all cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clips = synthetic_clips(args.clips)
        minutes = sum(clip.variant["duration_s"] for clip in clips) / 60
        started = time.perf_counter()
        sweep = write_synthetic_sweep(Path(folder), "bench", clips)
        print(f"wrote {args.clips} clips ({minutes:.0f} audio min) in {time.perf_counter() - started:.1f} s (untimed)")
        cores = args.workers or os.cpu_count() or 1
        for label in ("cold", "warm"):
            started, cpu = time.perf_counter(), cpu_seconds()
            write_report(sweep, args.workers)
            elapsed, used = time.perf_counter() - started, cpu_seconds() - cpu
            print(
                f"{label}: {args.clips} clips in {elapsed:.1f} s wall, {used:.1f} CPU s "
                f"({used / cores:.1f} s on {cores} idle core(s)); load average {os.getloadavg()[0]:.1f}"
            )


def cpu_seconds() -> float:
    """User + system time of this process and its reaped children (the image pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
