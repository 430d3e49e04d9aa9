"""Ship this project to remote hosts: its wheel, and the pinned runtime dependencies.

Cloud instances and SSH hosts install `musicsweep[worker]` from that wheel, so they run exactly
the launcher's code, with no git checkout or package index release needed. For EC2 the wheel goes
in the store under its content hash, so an unchanged project is uploaded once; SSH hosts get it,
with `pylock.toml` (the lock's runtime dependencies as direct URLs, which uv can install from its
cache with no index), next to the sweep's specs.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from musicsweep.errors import MusicsweepError
from musicsweep.store.base import Store

PACKAGES_PREFIX = "_packages"
HASH_LENGTH = 12


def project_root() -> Path:
    """The source tree this package was imported from (it must have its pyproject.toml)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise MusicsweepError(
            f"{root}: no pyproject.toml, so musicsweep cannot be packaged for remote hosts: install it from a "
            "checkout (`uv pip install -e /path/to/musicsweep`), or give the hosts `python:` or `setup:`"
        )
    return root


def require_packaging(why: str) -> None:
    """Fail before any write when the wheel cannot be built: no source tree, or no uv."""
    project_root()
    if shutil.which("uv") is None:
        raise MusicsweepError(f"uv is not on PATH: it is needed to build the wheel that {why}")


def wheel_key(digest: str, wheel_name: str) -> str:
    """Store key of a wheel: `_packages/{hash12}/{wheel file name}`."""
    return f"{PACKAGES_PREFIX}/{digest[:HASH_LENGTH]}/{wheel_name}"


def build_wheel(out_dir: Path, root: Path | None = None) -> Path:
    """`uv build --wheel` of the project into `out_dir`; returns the wheel's path."""
    require_packaging("remote workers install")
    uv = shutil.which("uv") or "uv"
    root = root or project_root()
    result = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out_dir), str(root)], capture_output=True, text=True, check=False
    )
    wheels = sorted(Path(out_dir).glob("musicsweep-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel produced"]
        raise MusicsweepError(f"building the musicsweep wheel failed: {last[0]}")
    return wheels[-1]


def export_pylock(out: Path, extra: str = "worker", root: Path | None = None) -> bool:
    """Write the lock's runtime dependencies (with `extra`, without dev groups or the project
    itself) as PEP 751 `pylock.toml` to `out`; False when the project has no `uv.lock`."""
    root = root or project_root()
    uv = shutil.which("uv")
    if uv is None or not (root / "uv.lock").is_file():
        return False
    argv = [uv, "export", "--frozen", "--no-dev", "--extra", extra, "--no-emit-project", "--no-header", "--quiet"]
    result = subprocess.run([*argv, "--format", "pylock.toml"], cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MusicsweepError(f"{root / 'uv.lock'}: exporting the runtime dependencies failed: {last[0]}")
    out.write_text(result.stdout)
    return True


def upload_wheel(store: Store, root: Path | None = None) -> str:
    """Build the wheel and put it in the store unless an identical one is there; returns its key."""
    with tempfile.TemporaryDirectory(prefix="musicsweep-wheel-") as folder:
        wheel = build_wheel(Path(folder), root)
        key = wheel_key(hashlib.sha256(wheel.read_bytes()).hexdigest(), wheel.name)
        if not store.exists(key):
            store.put_file(key, wheel)
    return key
