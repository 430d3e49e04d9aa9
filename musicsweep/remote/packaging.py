"""Ship this musicsweep to remote hosts: its wheel, and the pinned runtime dependencies.

Cloud instances and SSH hosts install `musicsweep[worker]` from that wheel, so they run exactly
the launcher's code, however it was installed. From a checkout (an editable install) `uv build`
makes the wheel, uncommitted changes included, and `uv export` pins the lock's runtime
dependencies; any other install (wheel, sdist, git URL, `uv tool install`) has no source tree, so
its installed files are zipped back into the wheel (`installed_wheel.py`) and the pins are the
lock that the wheel carries (`hatch_build.py` puts it there), or else the versions installed here.
For EC2 the wheel goes in the store under its content hash, so an unchanged install is uploaded
once; SSH hosts get it, with the pins, next to the sweep's specs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from musicsweep.digests import sha256_hex
from musicsweep.errors import MusicsweepError
from musicsweep.remote.installed_wheel import rebuild_wheel
from musicsweep.store.base import Store
from musicsweep.version import DISTRIBUTION, checkout_root

PACKAGES_PREFIX = "_packages"
HASH_LENGTH = 12
PYLOCK = "pylock.toml"  # PEP 751: the lock's runtime dependencies as URLs, installable from the uv cache
CONSTRAINTS = "constraints.txt"  # `name==version` of what is installed here, when no lock is at hand
PACKAGED_LOCK = "pylock.worker.toml"  # in the package of a wheel built from a checkout with its uv.lock


def require_packaging(why: str) -> None:
    """Fail before any write when the wheel cannot be built: a checkout needs uv to build it."""
    root = checkout_root()
    if root is not None and shutil.which("uv") is None:
        raise MusicsweepError(f"uv is not on PATH: it is needed to build the wheel that {why} from {root}")


def wheel_key(digest: str, wheel_name: str) -> str:
    """Store key of a wheel: `_packages/{hash12}/{wheel file name}`."""
    return f"{PACKAGES_PREFIX}/{digest[:HASH_LENGTH]}/{wheel_name}"


def last_line(result: subprocess.CompletedProcess, default: str) -> str:
    return ((result.stderr or result.stdout).strip().splitlines()[-1:] or [default])[0]


def build_wheel(out_dir: Path, root: Path | None = None) -> Path:
    """The wheel of this musicsweep in `out_dir`: `uv build` of a checkout, else the installed files."""
    root = root or checkout_root()
    if root is None:
        return rebuild_wheel(out_dir)
    require_packaging("remote workers install")
    uv = shutil.which("uv") or "uv"
    result = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out_dir), str(root)], capture_output=True, text=True, check=False
    )
    wheels = sorted(Path(out_dir).glob("musicsweep-*.whl"))
    if result.returncode != 0 or not wheels:
        raise MusicsweepError(f"building the musicsweep wheel failed: {last_line(result, 'no wheel produced')}")
    return wheels[-1]


def export_lock(root: Path, out: Path) -> bool:
    """The checkout's `uv.lock` runtime dependencies (worker extra, no dev groups, not the project
    itself) as PEP 751 `pylock.toml` in `out`; False when the checkout has no lock or no uv."""
    uv = shutil.which("uv")
    if uv is None or not (root / "uv.lock").is_file():
        return False
    argv = [uv, "export", "--frozen", "--no-dev", "--extra", "worker", "--no-emit-project", "--no-header", "--quiet"]
    result = subprocess.run([*argv, "--format", "pylock.toml"], cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise MusicsweepError(f"{root / 'uv.lock'}: exporting the runtime dependencies failed: {last_line(result, '')}")
    out.write_text(result.stdout)
    return True


def installed_constraints() -> str:
    """`name==version` of every distribution installed here but musicsweep: as constraints they pin
    whatever the host's resolution needs to the versions the launcher runs, and add nothing."""
    pins = {dist.metadata["Name"].lower(): dist.version for dist in metadata.distributions() if dist.metadata["Name"]}
    pins.pop(DISTRIBUTION, None)
    return "".join(f"{name}=={pinned}\n" for name, pinned in sorted(pins.items()))


def export_pins(folder: Path) -> bool:
    """Write the runtime pins into `folder`: `pylock.toml` (True) from the checkout's lock or the
    lock in the installed package, else `constraints.txt` (False) from the installed versions."""
    root = checkout_root()
    if root is not None and export_lock(root, folder / PYLOCK):
        return True
    packaged = resources.files("musicsweep").joinpath(PACKAGED_LOCK)
    if root is None and packaged.is_file():
        (folder / PYLOCK).write_bytes(packaged.read_bytes())
        return True
    (folder / CONSTRAINTS).write_text(installed_constraints())
    return False


@dataclass(frozen=True)
class StoredWheel:
    """A wheel in the store, and the SHA-256 of the bytes built here, which a host checks before installing."""

    key: str
    sha256: str


def upload_wheel(store: Store, root: Path | None = None) -> StoredWheel:
    """Build the wheel and put it in the store unless an identical one is there."""
    with tempfile.TemporaryDirectory(prefix="musicsweep-wheel-") as folder:
        wheel = build_wheel(Path(folder), root)
        digest = sha256_hex(wheel.read_bytes())
        key = wheel_key(digest, wheel.name)
        if not store.exists(key):
            store.put_file(key, wheel)
    return StoredWheel(key, digest)
