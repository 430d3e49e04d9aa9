"""Rebuild musicsweep's wheel from its installed files, for installs with no source tree.

An install from a wheel, an sdist, a git URL or `uv tool install` keeps only the package: its
RECORD lists every file the wheel put in site-packages. Zipping those files again (with the same
METADATA and WHEEL, a fresh RECORD, fixed timestamps and order) gives hosts the same code, and an
unchanged install gives the same bytes, so the content-hash stamps never reinstall it.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

from musicsweep.errors import MusicsweepError
from musicsweep.version import DISTRIBUTION

# Written by the installer, not part of the wheel (PEP 376, PEP 610, uv's own).
INSTALLER_FILES = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json", "uv_cache.json", "uv_build.json"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: equal files give equal wheels


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_files(dist: metadata.Distribution) -> list[PurePosixPath]:
    """What the wheel put in site-packages: no scripts (`../bin`), bytecode or installer records."""
    kept = []
    for path in dist.files or []:
        parts = PurePosixPath(path).parts
        if parts[0] == ".." or "__pycache__" in parts or path.name.endswith(".pyc"):
            continue
        if parts[0].endswith(".dist-info") and path.name in INSTALLER_FILES:
            continue
        kept.append(PurePosixPath(path))
    return sorted(kept)


def wheel_name(dist: metadata.Distribution) -> str:
    """`{name}-{version}-{tag}.whl`, the tag read from the installed WHEEL file."""
    lines = (dist.read_text("WHEEL") or "").splitlines()
    tags = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:")]
    if len(tags) != 1:
        raise MusicsweepError(f"{dist.locate_file('')}: the installed musicsweep has no single wheel tag to rebuild")
    return f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-{tags[0]}.whl"


def rebuild_wheel(out_dir: Path) -> Path:
    """Write the installed distribution as a wheel in `out_dir`; returns its path."""
    dist = metadata.distribution(DISTRIBUTION)
    files = wheel_files(dist)
    info = next((path.parts[0] for path in files if path.name == "METADATA"), None)
    if info is None:
        raise MusicsweepError(f"{dist.locate_file('')}: the installed musicsweep lists no METADATA in its RECORD")
    target = Path(out_dir) / wheel_name(dist)
    record = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path in files:
            data = Path(dist.locate_file(path)).read_bytes()
            wheel.writestr(zip_entry(str(path)), data)
            record.append(f"{path},{record_hash(data)},{len(data)}")
        record.append(f"{info}/RECORD,,")
        wheel.writestr(zip_entry(f"{info}/RECORD"), "\n".join(record) + "\n")
    return target


def zip_entry(name: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, FIXED_TIME)
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o644 << 16
    return entry
