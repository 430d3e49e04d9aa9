"""The calibrated estimate against the bill: one calibration sweep, then a sweep of new prompts.

    uv run python benchmarks/estimate.py --backend local [--runs 3]
    uv run python benchmarks/estimate.py --backend ssh [--runs 3]   # two sshd hosts on 127.0.0.2/3

Each run starts from an empty calibration file (its own XDG_CACHE_HOME) and a fresh project:
sweep A (prompts A x durations, tiny model) is launched and pulled, which records the calibration;
sweep B (new prompts, same model and durations) is then planned, launched and pulled, and its
estimated machine time (made at launch, kept in the manifest) is set beside the measured one
(cost_summary.json). Target: B's measured / estimated within 0.85-1.15. The default guess of
sweep A is printed too, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicsweep import VariantGenerator, run_sweep  # noqa: E402
from musicsweep.cli.pull import pull  # noqa: E402
from musicsweep.layout import SweepDir  # noqa: E402
from tests.fixtures.sshd import SSHServer, make_keys  # noqa: E402

DURATIONS = [10, 20]
PROMPTS_A = ["lofi hip hop with warm piano", "epic orchestral trailer", "dark techno", "ambient pad"]
PROMPTS_B = ["jazz trio with brushes", "surf rock guitar", "chiptune boss fight", "string quartet"]


def write_config(folder: Path, backend: str, servers: list[SSHServer]) -> None:
    raw: dict = {"backend": backend, "store": "./runs", "sweeps_dir": "./runs"}
    if backend == "local":
        raw["backends"] = {"local": {"workers": 1, "hourly_cost_usd": 1.0}}
    else:
        hosts = [server.entry(python=sys.executable, hourly_cost_usd=1.0, env=["HF_HUB_OFFLINE"]) for server in servers]
        raw["backends"] = {"ssh": {"hosts": hosts}}
    (folder / "musicsweep.yaml").write_text(yaml.safe_dump(raw))


def sweep(name: str, prompts: list[str]) -> dict:
    vg = VariantGenerator()
    vg.add("prompt", prompts)
    vg.add("duration_s", DURATIONS)
    vg.add("model", ["tiny"])
    vg.add("seed", [1])
    run_sweep(vg, name=name)
    pull(name, interval_s=1.0, orphan_grace_s=5.0)
    summary = json.loads(SweepDir(Path("runs").resolve(), name).cost_summary.read_text())
    return {"estimated_s": summary["estimate"]["machine_s"], "measured_s": summary["machine_s"]}


def one_run(backend: str, folder: Path, prompts: int) -> tuple[dict, dict]:
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    servers: list[SSHServer] = []
    if backend == "ssh":
        keys = make_keys(folder / "keys")
        servers = [SSHServer(address, folder / address, keys) for address in ("127.0.0.2", "127.0.0.3")]
        for server in servers:
            server.start()
    project = folder / "project"  # apart from the hosts' folders, which the code sync must not copy
    project.mkdir()
    os.environ["MUSICSWEEP_CONFIG"] = str(project / "musicsweep.yaml")
    try:
        write_config(project, backend, servers)
        os.chdir(project)
        first = sweep("calibrate", PROMPTS_A[:prompts])
        second = sweep("new-prompts", PROMPTS_B[:prompts])
    finally:
        for server in servers:
            server.stop()
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "ssh"], default="local")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per sweep (x 2 durations)")
    args = parser.parse_args()
    ratios = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            first, second = one_run(args.backend, Path(tmp), args.prompts)
        ratio = second["measured_s"] / second["estimated_s"]
        ratios.append(ratio)
        print(
            f"RESULT run {run + 1}: default guess {first['estimated_s']:.1f}s vs measured {first['measured_s']:.1f}s "
            f"({first['measured_s'] / first['estimated_s']:.2f}); calibrated {second['estimated_s']:.1f}s vs "
            f"measured {second['measured_s']:.1f}s ({ratio:.2f})",
            flush=True,
        )
    print(f"RESULT median measured/estimated after calibration: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
