"""What the default SSH setup installs: this musicsweep's wheel and its pinned runtime dependencies.

Built once per sweep folder and launch process (hosts are set up in parallel threads, so a lock
guards the build), into `{sweep}/setup/`, which `deploy` pushes with the specs and scripts. The
digest covers both files, so a host reinstalls only when the code or the pins changed.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from musicsweep.remote.packaging import build_wheel, export_pins

FOLDER = "setup"  # in the sweep folder, next to jobs/ and scripts/


@dataclass(frozen=True)
class WorkerBundle:
    folder: Path
    wheel: str  # file name of the wheel in `folder`
    pinned: bool  # `folder/pylock.toml` holds the runtime dependencies, else `constraints.txt` pins them
    digest: str


BUILT: dict[Path, WorkerBundle] = {}
LOCK = threading.Lock()


def worker_bundle(sweep_root: Path) -> WorkerBundle:
    """The bundle in `{sweep_root}/setup`, built on first use in this process."""
    with LOCK:
        if sweep_root not in BUILT:
            BUILT[sweep_root] = build_bundle(sweep_root / FOLDER)
        return BUILT[sweep_root]


def build_bundle(folder: Path) -> WorkerBundle:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="musicsweep-wheel-") as scratch:
        wheel = shutil.move(build_wheel(Path(scratch)), folder)
    pinned = export_pins(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return WorkerBundle(folder, Path(wheel).name, pinned, digest.hexdigest()[:16])
