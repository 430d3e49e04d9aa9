"""`musicsweep init`: a first project in the current folder, so that
`musicsweep init && python sweep.py && musicsweep pull` is a working first sweep.

The config runs on this machine (local backend, results in ./runs) and the example sweep uses the
built-in tiny model, which is built offline: nothing to download, nothing to pay.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from musicsweep.errors import MusicsweepError

CONFIG = """\
# musicsweep settings: where and how sweeps run. What a sweep generates (prompts, durations,
# models, seeds) lives in the sweep script (sweep.py) or on the `musicsweep launch` command line.
backend: local          # local | ssh | slurm | ec2 | runpod (docs/backends/)
store: ./runs           # where workers put clips: a folder, or s3://bucket/prefix (docs/stores.md)
sweeps_dir: ./runs      # where `musicsweep pull` collects audio, cost_report.csv and the report
engine:
  batch_size: auto      # or a number
  device: auto          # auto | cpu | cuda
backends:
  local:
    workers: 1          # worker processes on this machine
    hourly_cost_usd: 0.0   # what this machine costs you per hour, for the cost report
"""

SWEEP = '''\
"""A first sweep: 2 prompts x 1 duration x 2 seeds on the built-in tiny model (4 short clips).

python sweep.py && musicsweep pull      # launch, then follow it until every clip is in runs/first-sweep
Swap "tiny" for "small" (or medium, large) to hear real music: those download from Hugging Face.
"""

import sys

from musicsweep import MusicsweepError, VariantGenerator, run_sweep

vg = VariantGenerator()
vg.add("prompt", ["lofi hip hop with warm piano", "epic orchestral trailer"])
vg.add("duration_s", [5])
vg.add("model", ["tiny"])
vg.add("seed", [1, 2])

if __name__ == "__main__":
    try:
        run_sweep(vg, name="first-sweep")
    except MusicsweepError as error:
        sys.exit(f"error: {error}")
'''

FILES = {"musicsweep.yaml": CONFIG, "sweep.py": SWEEP}


def write_project(folder: Path) -> list[Path]:
    """Write both files, or neither when one is already there."""
    for name in FILES:
        if (folder / name).exists():
            raise MusicsweepError(f"{folder / name} already exists: musicsweep init overwrites nothing")
    for name, text in FILES.items():
        (folder / name).write_text(text)
    return [folder / name for name in FILES]


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="musicsweep init",
        description="Write a commented musicsweep.yaml (local backend, ./runs store) and an example sweep.py "
        "into the current folder. Existing files are never overwritten.",
        epilog="then: python sweep.py && musicsweep pull",
    ).parse_args(argv)
    for path in write_project(Path.cwd()):
        print(f"wrote {path.name}")
    print("next: python sweep.py && musicsweep pull")
    return 0
