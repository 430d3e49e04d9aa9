"""Where SLURM's client commands run and how the compute nodes see a sweep: this machine when it
is the login node, or a login node reached over ssh (`backends.slurm.login`), to which the code,
specs and scripts are pushed and from which results are pulled."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from musicsweep.backends.slurm.settings import SlurmConfig
from musicsweep.config import Config
from musicsweep.errors import MusicsweepError
from musicsweep.layout import LOGS_DIR, SweepDir
from musicsweep.remote.batch import run_here, run_on_login
from musicsweep.remote.codesync import DEFAULT_EXCLUDES, code_filters
from musicsweep.remote.hosts import deploy, environment_setup, pull_host, python_of
from musicsweep.remote.ssh import run_ssh
from musicsweep.store.base import Store
from musicsweep.store.pull import PULLED_FOLDERS


class Cluster:
    def __init__(self, config: Config, settings: SlurmConfig, where: str) -> None:
        self.config = config
        self.settings = settings
        self.login = settings.login
        self.where = where

    @property
    def store_on_cluster_disk(self) -> bool:
        """Through a login node, a folder store lives on the cluster's disk (as with SSH hosts)."""
        return self.login is not None and not self.config.store.url.startswith("s3://")

    def run_all(self, commands: list[list[str]], stdin: str | None = None) -> list[subprocess.CompletedProcess]:
        """SLURM client commands on the login node: this machine, or one ssh round trip."""
        if self.login is not None:
            return run_on_login(self.login, commands, stdin)
        try:
            return run_here(commands, stdin)
        except FileNotFoundError as error:
            raise MusicsweepError(
                f"{self.where}: {error.filename} not found: run on a SLURM login node or set backends.slurm.login"
            ) from None

    def run(self, command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.run_all([command], stdin)[0]

    def job_dir(self, sweep: SweepDir) -> str:
        """The sweep folder as the compute nodes see it (a shared filesystem)."""
        return self.login.work_dir(sweep.name) if self.login is not None else str(sweep.root)

    def code_dir(self) -> str:
        return self.login.code_dir if self.login is not None else str(self.config.base_dir)

    def python(self) -> str:
        """The worker's interpreter command, as written in the script (like the other backends)."""
        if self.settings.python:
            return self.settings.python
        return python_of(self.login) if self.login is not None else sys.executable

    def store_dir(self) -> str | None:
        """The folder store as the compute nodes see it, when it lives on the cluster's disk."""
        return self.login.runs_dir if self.store_on_cluster_disk else None

    def prepare(self, sweep: SweepDir) -> None:
        """Make the sweep runnable where sbatch runs: here, the logs folder sbatch does not create;
        through a login node, push code, specs and scripts and build the environment once (the SSH
        backend's steps; compute nodes see them on the shared filesystem)."""
        if self.login is None:
            sweep.folder(LOGS_DIR).mkdir(parents=True, exist_ok=True)  # sbatch does not create --output's folder
            return
        outputs = [Path(self.config.sweeps_dir)]
        if self.store_on_cluster_disk:
            outputs.append(Path(self.config.store.url))
        filters = code_filters(self.config.base_dir, [], list(DEFAULT_EXCLUDES), outputs)
        deploy(self.login, self.config.base_dir, filters, sweep)
        setup = environment_setup(self.login, sweep, self.config.base_dir)
        logs = f"mkdir -p {shlex.quote(self.job_dir(sweep))}/{LOGS_DIR}\n"
        run_ssh(self.login, "bash -s", stdin=f"{logs}{setup}", what="setup")

    def pull(self, sweep: SweepDir, store: Store) -> None:
        """Through a login node, rsync the cluster-side results (or, with an S3 store, the logs)."""
        if self.login is None:
            return
        target, folders = (store.local_path(sweep.name), PULLED_FOLDERS)
        if not self.store_on_cluster_disk:
            target, folders = sweep.root, (LOGS_DIR,)
        pull_host(self.login, sweep.name, target, folders)
