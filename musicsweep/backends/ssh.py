"""SSH hosts backend: rsync the code, prepare a uv environment once, start detached workers, and
poll, pull and kill over one ssh round trip per host.

Per-host steps are plain functions over `SSHHost` in `remote/hosts.py`, shared with the RunPod
and SLURM backends for hosts they build themselves; `SSHBackend` is a thin loop over the
configured hosts.

Remote layout: `{remote_dir}/code` holds the project, `{remote_dir}/runs/{sweep}` mirrors the local
sweep folder (`jobs`, `scripts`, `logs`, and, when the store is the host's disk, `audio`, `costs`,
`markers`). With an `s3://` store the worker writes results and markers to S3 instead.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from musicsweep.backends.base import Backend, Launch, LaunchFailed, Shard, balanced_shards
from musicsweep.backends.probe import HostProbe, classify
from musicsweep.config import Config
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import LOGS_DIR, JobPaths, SweepDir, list_markers
from musicsweep.manifest import Manifest
from musicsweep.remote.codesync import code_filters
from musicsweep.remote.hosts import (
    check_host,
    deploy,
    environment_setup,
    forget_stale,
    host_worker_script,
    hosts_from_state,
    kill_groups,
    parse_settings,
    prepare_block,
    probe_host,
    pull_extra_dir,
    pull_host,
    stale_block,
    start_workers,
    uses_default_setup,
    warn_failures,
)
from musicsweep.remote.packaging import require_packaging
from musicsweep.remote.ssh import (
    HostUnreachable,
    SSHHost,
    combined_error,
    on_hosts,
)
from musicsweep.scripts import WorkerScript, write_script
from musicsweep.states import JobState, marker_state
from musicsweep.store import open_store
from musicsweep.store.pull import PULLED_FOLDERS, pull_results

logger = logging.getLogger(__name__)


@dataclass
class SSHHosts:
    """What the manifest keeps of an SSH sweep: the host entries it was launched on, by label, so
    auto_pull reaches them even if musicsweep.yaml changes."""

    KEY: ClassVar[str] = "ssh_hosts"
    hosts: dict[str, SSHHost] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {label: asdict(host) for label, host in self.hosts.items()}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Self:
        return cls(hosts_from_state(payload))


class SSHBackend(Backend):
    name = "ssh"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.settings = parse_settings(config)
        self.unreachable: set[str] = set()  # hosts the last poll could not reach: no new work, no pulls
        self.probes: dict[str, HostProbe] = {}
        self.extra_dirs: dict[str, dict[str, set[str]]] = {}

    @property
    def store_is_host_disk(self) -> bool:
        return not self.config.store.url.startswith("s3://")

    @property
    def store_per_host(self) -> bool:
        return self.store_is_host_disk

    def configured(self) -> dict[str, SSHHost]:
        return {host.label: host for host in self.settings.hosts}

    def hosts_of(self, manifest: Manifest) -> dict[str, SSHHost]:
        """Hosts by label: the configured ones, overridden by those the sweep was launched on."""
        return self.configured() | manifest.state_of(SSHHosts).hosts

    def validate(self, dry_run: bool = False) -> None:
        hosts = list(self.settings.hosts)
        if not hosts:
            raise MusicsweepError(f"{self.config.where('backends.ssh.hosts')}: list at least one host")
        for host in hosts:
            missing = [name for name in host.env if name not in os.environ]
            if missing:
                raise MusicsweepError(f"host {host.label}: env {missing[0]} is not set in this environment")
        if any(uses_default_setup(host) for host in hosts):
            require_packaging("the default setup installs on SSH hosts")
        error = combined_error(on_hosts(hosts, lambda host: check_host(host, write=not dry_run)))
        if error is not None:
            raise error

    def shard(self, jobs: list[Job]) -> list[Shard]:
        hosts = [host for host in self.settings.hosts if host.label not in self.unreachable]
        if not hosts:
            raise MusicsweepError(f"{self.config.where('backends.ssh.hosts')}: no reachable host to run on")
        return balanced_shards(
            jobs, [(host.label, host.hourly_cost_usd) for host in hosts for _ in range(host.workers)]
        )

    def worker_script(self, launch: Launch, shard: Shard, host: SSHHost, slot: int, workers: int) -> WorkerScript:
        return host_worker_script(launch, shard, host, slot, workers, host_disk=self.store_is_host_disk)

    def submit(self, launch: Launch, shards: list[Shard]) -> SSHHosts:
        sweep = launch.sweep
        configured = self.configured()
        by_host: dict[str, list[Shard]] = defaultdict(list)
        for shard in shards:
            host = configured[shard.host]
            script = self.worker_script(launch, shard, host, len(by_host[shard.host]), len(shards))
            write_script(sweep.worker(shard.worker_id).script, script.render())
            by_host[shard.host].append(shard)
        hosts = [configured[label] for label in by_host]
        outputs = [Path(self.config.sweeps_dir)]
        if self.store_is_host_disk:
            outputs.append(Path(self.config.store.url))
        filters = code_filters(
            self.config.base_dir, list(self.settings.rsync_include), list(self.settings.rsync_exclude), outputs
        )

        relative = [JobPaths.of(job, "") for shard in shards for job in shard.jobs]
        stale = [str(paths.pid) for paths in relative]  # an older attempt's `.failed` no longer counts

        def launch_on(host: SSHHost) -> str:
            deploy(host, self.config.base_dir, filters, sweep)
            setup = environment_setup(host, sweep, self.config.base_dir)
            prepare = prepare_block(host, self.settings.prepare)
            before = stale_block(stale) + setup + prepare
            output = start_workers(host, sweep.name, launch.launch_id, by_host[host.label], before)
            logger.info(f"host {host.label}: started {len(by_host[host.label])} worker(s)")
            return output

        results = on_hosts(hosts, launch_on)
        error = combined_error(results)
        previous = sweep.read_manifest().state_of(SSHHosts).hosts
        others = [host for label, host in previous.items() if label not in by_host and label not in self.unreachable]
        warn_failures(on_hosts(others, lambda host: forget_stale(host, sweep.name, stale)), "stale marker cleanup")
        state = SSHHosts(previous | {host.label: host for host in hosts})
        if error is not None:
            failed = {
                s.worker_id for label, r in results.items() if isinstance(r, MusicsweepError) for s in by_host[label]
            }
            raise LaunchFailed(str(error), state, failed)
        return state

    def jobs_by_host(self, manifest: Manifest) -> dict[str, dict[str, int]]:
        grouped: dict[str, dict[str, int]] = defaultdict(dict)
        for job_id, entry in manifest.jobs.items():
            if entry.assigned and entry.host:
                grouped[entry.host][job_id] = entry.worker
        return grouped

    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        """One ssh round trip per host (run in parallel); hosts that do not answer make their jobs `lost`."""
        grouped = self.jobs_by_host(manifest)
        hosts = self.hosts_of(manifest)
        unknown = sorted(set(grouped) - set(hosts))
        if unknown:
            raise MusicsweepError(f"{self.config.where('backends.ssh.hosts')}: sweep host {unknown[0]!r} is not listed")
        probes = on_hosts([hosts[label] for label in grouped], lambda host: probe_host(host, sweep.name))
        markers = None
        if not self.store_is_host_disk:
            store = open_store(self.config.store)
            markers = list_markers(store, sweep.name)
        states: dict[str, str] = {}
        self.unreachable, self.probes, self.unreachable_why = set(), {}, {}
        for label, jobs in grouped.items():
            probe = probes[label]
            if isinstance(probe, HostUnreachable):
                self.unreachable.add(label)
                self.unreachable_why[label] = str(probe).split(": ", 2)[-1]
                launch_of = manifest.launch_of()  # an S3 store still shows what the host finished
                states |= {job: marker_state(job, launch_of[job], markers or set()) or JobState.LOST for job in jobs}
                continue
            if isinstance(probe, MusicsweepError):
                raise probe
            if markers is not None:
                probe.markers = markers
            self.probes[label] = probe
            states |= classify(jobs, probe, manifest.launch_of())
        return states

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        hosts = self.hosts_of(manifest)
        wanted: dict[str, set[str]] = defaultdict(set)
        for job_id in job_ids:
            wanted[manifest.jobs[job_id].host].add(job_id)

        def kill(host: SSHHost) -> None:
            probe = self.probes.get(host.label) or probe_host(host, sweep.name)
            kill_groups(
                host,
                {probe.job_pids[j][1] for j in wanted[host.label] if j in probe.job_pids},
                self.settings.kill_grace_s,
            )

        warn_failures(on_hosts([hosts[label] for label in wanted], kill), "orphan kill")

    def fetch(self, sweep: SweepDir, manifest: Manifest) -> None:
        """rsync results (host-disk store) or logs (S3 store) from every reachable host, then pull the store."""
        hosts = self.hosts_of(manifest)
        labels = [label for label in self.jobs_by_host(manifest) if label not in self.unreachable]
        store = open_store(self.config.store)
        if self.store_is_host_disk:
            target, folders = store.local_path(sweep.name), PULLED_FOLDERS
        else:
            target, folders = sweep.root, (LOGS_DIR,)
        extra = self.extra_pull_dirs(sweep, manifest)

        def pull(host: SSHHost) -> None:
            pull_host(host, sweep.name, target, folders)
            for path in sorted(extra.get(host.label, ())):
                pull_extra_dir(host, path, self.config.base_dir)

        warn_failures(on_hosts([hosts[label] for label in labels], pull), "pull")
        pull_results(store, sweep)

    def extra_pull_dirs(self, sweep: SweepDir, manifest: Manifest) -> dict[str, set[str]]:
        """Host label -> extra folders its jobs name (read from the specs once per sweep)."""
        if sweep.name not in self.extra_dirs:
            found: dict[str, set[str]] = defaultdict(set)
            for label, jobs in self.jobs_by_host(manifest).items():
                for job_id in jobs:
                    found[label].update(sweep.read_spec(job_id, manifest.jobs[job_id].spec_sha256).extra_pull_dirs)
            self.extra_dirs[sweep.name] = found
        return self.extra_dirs[sweep.name]

    def cancel(self, sweep: SweepDir, manifest: Manifest) -> None:
        hosts = self.hosts_of(manifest)

        def stop(host: SSHHost) -> None:
            probe = probe_host(host, sweep.name)
            groups = {pgid for _, pgid in probe.job_pids.values()} | set(probe.worker_pids.values())
            kill_groups(host, groups & probe.alive_pids, self.settings.kill_grace_s)

        warn_failures(on_hosts([hosts[label] for label in self.jobs_by_host(manifest)], stop), "cancel")
