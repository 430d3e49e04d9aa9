"""Local backend: workers are detached process groups on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from musicsweep.atomic import atomic_write_text
from musicsweep.backends.base import Backend, Launch, Shard, balanced_shards
from musicsweep.backends.probe import HostProbe, classify, probe_here
from musicsweep.backends.processes import kill_process_group
from musicsweep.config import at_least, typed_section
from musicsweep.contract import worker_environment
from musicsweep.job import Job
from musicsweep.layout import MARKERS_DIR, SweepDir, list_markers
from musicsweep.manifest import Manifest
from musicsweep.scripts import WorkerScript, write_script
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.pull import pull_results
from musicsweep.worker.deps import require_worker_deps


@dataclass(frozen=True)
class LocalConfig:
    workers: int = at_least(1, 1)
    hourly_cost_usd: float = at_least(0, 0.0)
    python: str | None = None


class LocalBackend(Backend):
    name = "local"
    poll_interval_s = (0.5, 2.0)  # a poll is one `ps` and a folder listing

    def __init__(self, config) -> None:
        super().__init__(config)
        self.settings = typed_section(LocalConfig, config.backend_section("local"), config.where("backends.local"))

    def validate(self, dry_run: bool = False) -> None:
        """The interpreter the workers will run must find torch, transformers and soundfile."""
        where = self.config.where("backends.local.python") if self.settings.python else "local backend"
        require_worker_deps(self.settings.python, where)

    def shard(self, jobs: list[Job]) -> list[Shard]:
        slots = [("localhost", self.settings.hourly_cost_usd)] * self.settings.workers
        return balanced_shards(jobs, slots)

    def submit(self, launch: Launch, shards: list[Shard]) -> None:
        sweep = launch.sweep
        python = self.settings.python or sys.executable
        for shard in shards:
            paths = sweep.worker(shard.worker_id, launch.launch_id)
            env = worker_environment(launch.env, str(sweep.root), shard.worker_id, len(shards), shard.hourly_cost_usd)
            script = WorkerScript(
                sweep=sweep.name,
                worker_id=shard.worker_id,
                num_workers=len(shards),
                cwd=str(self.config.base_dir),
                log=str(paths.log),
                specs=sweep.spec_paths(shard.jobs),
                python=python,
                env=env,
            )
            write_script(paths.script, script.render())
            process = subprocess.Popen(
                ["bash", str(paths.script)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            atomic_write_text(paths.pid, f"{process.pid}\n")

    def _probe(self, sweep: SweepDir) -> HostProbe:
        markers_dir = sweep.folder(MARKERS_DIR)
        probe = probe_here(str(sweep.root), str(markers_dir))
        store = open_store(self.config.store)
        if store.local_path(sweep.keys.markers.rstrip("/")) != markers_dir:
            probe.markers = list_markers(store, sweep.name)
        return probe

    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        jobs = {job_id: entry.worker for job_id, entry in manifest.jobs.items() if entry.assigned}
        return classify(jobs, self._probe(sweep), manifest.launch_of())

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        probe = self._probe(sweep)
        for pgid in {probe.job_pids[job_id][1] for job_id in job_ids if job_id in probe.job_pids}:
            kill_process_group(pgid)

    def fetch(self, sweep: SweepDir, manifest: Manifest) -> None:
        pull_results(open_store(self.config.store), sweep)

    def cancel(self, sweep: SweepDir, manifest: Manifest) -> None:
        probe = self._probe(sweep)
        groups = {pgid for _, pgid in probe.job_pids.values()} | set(probe.worker_pids.values())
        for pgid in groups:
            if pgid in probe.alive_pids:
                kill_process_group(pgid)
