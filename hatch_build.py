"""Build hook: put the worker's pinned runtime dependencies inside the wheel.

An install from that wheel (or from an sdist or git URL, which builds it) has no uv.lock, yet its
launches must give SSH hosts the same pins as a checkout does, so that a host with no package index
installs from its uv cache. `uv export` of the lock goes in as `musicsweep/pylock.worker.toml`;
with no uv or no lock at build time the wheel goes without, and the installed versions pin instead.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

EXPORT = ["export", "--frozen", "--no-dev", "--extra", "worker", "--no-emit-project", "--no-header", "--quiet"]


class WorkerLockHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        uv = shutil.which("uv")
        root = Path(self.root)
        if version == "editable" or uv is None or not (root / "uv.lock").is_file():
            return
        result = subprocess.run([uv, *EXPORT, "--format", "pylock.toml"], cwd=root, capture_output=True, text=True)
        if result.returncode != 0:
            return
        self.scratch = tempfile.mkdtemp(prefix="musicsweep-lock-")
        lock = Path(self.scratch) / "pylock.worker.toml"
        lock.write_text(result.stdout)
        build_data["force_include"][str(lock)] = "musicsweep/pylock.worker.toml"

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        if getattr(self, "scratch", None):
            shutil.rmtree(self.scratch, ignore_errors=True)
