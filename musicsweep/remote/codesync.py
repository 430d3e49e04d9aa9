"""Copy the project's code to a host with rsync, honouring include/exclude rules.

Includes come first, as rsync applies the first rule that matches. The local sweeps folder and a
local store inside the project are always left out: results travel the other way.
"""

from __future__ import annotations

from pathlib import Path

from musicsweep.remote.ssh import SSHHost, rsync

DEFAULT_EXCLUDES = (".git", ".venv", "__pycache__", "*.pyc", "node_modules", ".pytest_cache", ".ruff_cache")


def code_filters(base_dir: Path, includes: list[str], excludes: list[str], local_outputs: list[Path]) -> list[str]:
    """rsync `--include`/`--exclude` arguments: user includes, user excludes, then local outputs."""
    filters = [f"--include={pattern}" for pattern in includes]
    filters += [f"--exclude={pattern}" for pattern in excludes]
    for path in local_outputs:
        resolved = Path(path).resolve()
        if resolved != base_dir.resolve() and resolved.is_relative_to(base_dir.resolve()):
            filters.append(f"--exclude=/{resolved.relative_to(base_dir.resolve()).as_posix()}/")
    return filters


def sync_code(host: SSHHost, base_dir: Path, filters: list[str]) -> None:
    """Push `base_dir` to `{remote_dir}/code` (files removed locally stay on the host)."""
    rsync(host, [f"{base_dir}/"], f":{host.code_dir}/", ["--mkpath", *filters], what="code sync")
