"""Which musicsweep this is and where it was installed from.

`musicsweep --version` prints it, every worker logs it, and a worker refuses to run for a launch of
another version (`worker/version.py`): results of one sweep must come from one code base.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "musicsweep"


def checkout_root() -> Path | None:
    """The source tree this package was imported from (an editable install or a checkout on the
    path), or None for an install that holds only the package (wheel, sdist, git URL, uv tool)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


@functools.cache
def version() -> str:
    """The installed distribution's version; a checkout that was never installed reads its pyproject."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        root = checkout_root()
        if root is None:
            return "unknown"
        return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def git_commit(root: Path) -> str:
    """`commit abc1234` (`, uncommitted changes` when the tree differs), or `no git commit`."""

    def git(*argv: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, check=False)
        except OSError:
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD")
    if commit is None:
        return "no git commit"
    return f"commit {commit}" + (", uncommitted changes" if git("status", "--porcelain") else "")


def installed_from() -> str:
    """A checkout with its git commit, or what the installer recorded (PEP 610 `direct_url.json`)."""
    root = checkout_root()
    if root is not None:
        return f"checkout {root} ({git_commit(root)})"
    dist = metadata.distribution(DISTRIBUTION)
    where = dist.locate_file("")
    origin = json.loads(dist.read_text("direct_url.json") or "{}")
    if "vcs_info" in origin:
        commit = origin["vcs_info"].get("commit_id", "")[:12]
        return f"git {origin['url']} @ {commit}, installed in {where}"
    if "archive_info" in origin:
        return f"{origin['url'].rsplit('/', 1)[-1]}, installed in {where}"
    return f"a package index wheel, installed in {where}"


def describe() -> str:
    return f"musicsweep {version()} from {installed_from()}"
