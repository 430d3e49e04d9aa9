"""Temporary files of pulls: named after their process, so a later pull removes what a killed one left.

A pull downloads to `.NAME.pull-PID-RANDOM.tmp` and renames it into place. A pull killed
mid-download leaves that file behind; the next pull deletes every such file whose process is
gone. Other hidden `.tmp` files (a local worker's atomic writes into the same folder) are never
touched, since their writer may still be alive.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

_PULL_TEMP = re.compile(r"^\..+\.pull-(\d+)-[0-9a-f]{8}\.tmp$")


def pull_temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.pull-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_pull_temps(folder: Path) -> int:
    """Delete pull temporaries under `folder` whose pull process no longer runs; returns the count."""
    removed = 0
    if not folder.is_dir():
        return removed
    for dirpath, _, names in os.walk(folder):
        for name in names:
            match = _PULL_TEMP.match(name)
            if match and (int(match[1]) == os.getpid() or not pid_alive(int(match[1]))):
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed
