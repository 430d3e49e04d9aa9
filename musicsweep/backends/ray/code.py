"""This musicsweep, as the job's `runtime_env.py_modules`: the package and its `.dist-info`, unpacked
from the wheel the other remote backends install (`remote/packaging.build_wheel`: `uv build` of a
checkout, or the installed files zipped back), so the nodes run the launcher's version from any
kind of install without pip. Ray uploads each folder once per content hash."""

from __future__ import annotations

import functools
import hashlib
import shutil
import tempfile
import zipfile
from pathlib import Path

from musicsweep.layout import calibration_file
from musicsweep.remote.packaging import HASH_LENGTH, build_wheel


def code_cache() -> Path:
    """Beside the calibration, in this user's musicsweep cache folder."""
    return calibration_file().parent / "ray-code"


@functools.cache
def shipped_modules() -> list[str]:
    """The unpacked wheel's top-level folders (`musicsweep/`, `musicsweep-*.dist-info/`), built once
    per launcher process: its code does not change while it runs."""
    cache = code_cache()
    with tempfile.TemporaryDirectory(prefix="musicsweep-wheel-") as folder:
        wheel = build_wheel(Path(folder))
        target = cache / hashlib.sha256(wheel.read_bytes()).hexdigest()[:HASH_LENGTH]
        if not target.is_dir():
            cache.mkdir(parents=True, exist_ok=True)
            unpacked = Path(tempfile.mkdtemp(prefix="unpacking-", dir=cache))
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(unpacked)
            try:
                unpacked.rename(target)
            except OSError:  # another launch unpacked the same wheel first
                shutil.rmtree(unpacked, ignore_errors=True)
    return sorted(str(path) for path in target.iterdir() if path.is_dir())
