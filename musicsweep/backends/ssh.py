"""SSH hosts backend: rsync the code, prepare a uv environment once, start detached workers, and
poll, pull and kill over one ssh round trip per host.

Per-host steps are plain functions over `SSHHost` (`check_host`, `deploy`, `start_workers`,
`probe_host`, `pull_host`, `kill_groups`) so the RunPod and SLURM backends reuse them for hosts they
build themselves; `SSHBackend` is a thin loop over the configured hosts.

Remote layout: `{remote_dir}/code` holds the project, `{remote_dir}/runs/{sweep}` mirrors the local
sweep folder (`jobs`, `scripts`, `logs`, and, when the store is the host's disk, `audio`, `costs`,
`markers`). With an `s3://` store the worker writes results and markers to S3 instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from musicsweep.backends.base import Backend, Launch, LaunchFailed, Shard, balanced_shards
from musicsweep.backends.probe import HostProbe, classify, parse_probe, probe_command
from musicsweep.config import Config, typed_section
from musicsweep.contract import worker_environment
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import JOBS_DIR, LOGS_DIR, PID_SUFFIX, SCRIPTS_DIR, JobPaths, SweepDir, WorkerPaths, list_markers
from musicsweep.manifest import Manifest
from musicsweep.packaging import require_packaging
from musicsweep.remote.bundle import FOLDER as BUNDLE_FOLDER
from musicsweep.remote.bundle import WorkerBundle, worker_bundle
from musicsweep.remote.codesync import DEFAULT_EXCLUDES, code_filters, sync_code
from musicsweep.remote.ssh import (
    HostUnreachable,
    SSHHost,
    combined_error,
    env_exports,
    on_hosts,
    rsync,
    run_ssh,
)
from musicsweep.scripts import WorkerScript, write_script
from musicsweep.states import JobState, marker_state
from musicsweep.store import open_store
from musicsweep.store.pull import PULLED_FOLDERS, pull_results
from musicsweep.worker.deps import remote_check

logger = logging.getLogger(__name__)

# Used when a host names neither `python` nor `setup`, in `{remote_dir}/code`: installs uv if
# missing, makes `.venv`, and installs the pinned runtime dependencies and this project's wheel
# from the bundle that `deploy` pushed (never the dev group, never musicsweep from an index). Each
# install tries the host's uv cache first (`--offline`), then the package index.
DEFAULT_SETUP = """\
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
command -v uv >/dev/null 2>&1 || python3 -m pip install --user uv \\
  || python3 -m pip install --user --break-system-packages uv || exit 1
[ -x .venv/bin/python ] || uv venv --quiet --python '>=3.11' .venv || exit 1
install() {
  uv pip install --python .venv/bin/python --offline "$@" && return
  echo "[musicsweep] not all in the uv cache: trying the package index"
  uv pip install --python .venv/bin/python "$@"
}
bundle=$MUSICSWEEP_SETUP_DIR
if [ -f "$bundle/pylock.toml" ]; then
  install -r "$bundle/pylock.toml" && install --no-deps --reinstall-package musicsweep "$bundle/$MUSICSWEEP_WHEEL"
else
  install --reinstall-package musicsweep "musicsweep[worker] @ file://$bundle/$MUSICSWEEP_WHEEL"
fi
"""
HOSTS_STATE = "ssh_hosts"
POLL_TIMEOUT_S = 60  # a host whose probe hangs this long counts as unreachable for this poll

KILL_SCRIPT = """
alive() {{ ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {{ found = 1 }} END {{ exit !found }}'; }}
groups={groups}
for g in $groups; do kill -TERM -- "-$g" 2>/dev/null; done
end=$((SECONDS + {grace}))
while [ "$SECONDS" -lt "$end" ]; do
  left=; for g in $groups; do alive "$g" && left=1; done
  [ -z "$left" ] && exit 0
  sleep 0.2
done
for g in $groups; do kill -KILL -- "-$g" 2>/dev/null; done
true
"""


@dataclass(frozen=True)
class SSHSettings:
    """`backends.ssh` in musicsweep.yaml."""

    hosts: tuple[SSHHost, ...] = ()
    rsync_include: tuple[str, ...] = ()
    rsync_exclude: tuple[str, ...] = DEFAULT_EXCLUDES
    prepare: tuple[str, ...] = ()
    kill_grace_s: int = 5


def parse_settings(config: Config) -> SSHSettings:
    where = config.where("backends.ssh")
    settings = typed_section(SSHSettings, config.backend_section("ssh"), where)
    seen: set[str] = set()
    for index, host in enumerate(settings.hosts):
        host.check(f"{where}.hosts[{index}]")
        if host.label in seen:
            raise MusicsweepError(f"{where}.hosts[{index}]: host {host.label!r} is listed twice (give it a 'name')")
        seen.add(host.label)
    return settings


def hosts_state(hosts: list[SSHHost]) -> dict[str, dict]:
    """Host entries as kept in the manifest, so auto_pull reaches them even if the config changes."""
    return {host.label: asdict(host) for host in hosts}


def hosts_from_state(state: dict[str, dict]) -> dict[str, SSHHost]:
    return {label: typed_section(SSHHost, entry, f"manifest host {label}") for label, entry in state.items()}


def check_host(host: SSHHost, write: bool = True) -> None:
    """Reachable, key accepted, `remote_dir` a writable folder, and a set `python` (with no
    `setup` to install into it) able to import the worker's modules: one round trip, one-line errors.

    With `write=False` (a dry run) nothing is created: the nearest existing folder on the path
    must be a writable directory.
    """
    folder = shlex.quote(host.remote_dir)
    probe = f"{folder}/.musicsweep-write-check"
    if write:
        check = f"mkdir -p {folder} 2>/dev/null && touch {probe} 2>/dev/null && rm -f {probe}"
    else:
        check = f'd={folder}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; [ -d "$d" ] && [ -w "$d" ]'
    command = f"{{ {check}; }} || {{ echo remote_dir {folder} is not a writable folder >&2; exit 1; }}"
    if host.python is not None and host.setup is None:
        command += f"; {remote_check(host.python)}"
    run_ssh(host, command, what="launch check")


def python_of(host: SSHHost) -> str:
    return host.python or f"{host.code_dir}/.venv/bin/python"


def uses_default_setup(host: SSHHost) -> bool:
    return host.python is None and host.setup is None


def setup_stamp(host: SSHHost, base_dir: Path, bundle: WorkerBundle | None) -> str | None:
    """Hash of what the environment depends on; None when the host needs no setup.

    The default setup depends on the bundle (wheel and pins); a custom `setup` on the project's
    `pyproject.toml` and `uv.lock`.
    """
    if host.python is not None and host.setup is None:
        return None
    digest = hashlib.sha256((host.setup or DEFAULT_SETUP).encode())
    if bundle is not None:
        digest.update(bundle.digest.encode())
    else:
        for name in ("pyproject.toml", "uv.lock"):
            path = base_dir / name
            digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def environment_setup(host: SSHHost, sweep: SweepDir, base_dir: Path) -> str:
    """Bash that runs the host's setup unless its stamp matches, i.e. a second sweep reuses the env."""
    bundle = worker_bundle(sweep.root) if uses_default_setup(host) else None
    stamp = setup_stamp(host, base_dir, bundle)
    if stamp is None:
        return ""
    stamp_file = shlex.quote(f"{host.remote_dir}/.musicsweep-env")
    log = shlex.quote(f"{host.remote_dir}/setup.log")
    exports = ""
    if bundle is not None:
        folder = f"{host.work_dir(sweep.name)}/{BUNDLE_FOLDER}"
        exports = f"export MUSICSWEEP_SETUP_DIR={shlex.quote(folder)} MUSICSWEEP_WHEEL={shlex.quote(bundle.wheel)}\n"
    return (
        f'if [ "$(cat {stamp_file} 2>/dev/null)" = {stamp} ]; then echo "#setup cached"; else\n'
        f"  ( cd {shlex.quote(host.code_dir)} || exit 1\n{exports}{host.setup or DEFAULT_SETUP}\n) >>{log} 2>&1 "
        f"|| {{ echo environment setup failed, see {log} >&2; exit 1; }}\n"
        f'  echo {stamp} >{stamp_file}; echo "#setup ran"\nfi\n'
    )


def prepare_block(host: SSHHost, commands: tuple[str, ...]) -> str:
    """Bash running the `prepare` commands in the code folder at every launch; the first failure stops it."""
    log = f"{LOGS_DIR}/prepare.log"
    return "".join(
        f"( cd {shlex.quote(host.code_dir)} && {command} ) >>{log} 2>&1 "
        f"|| {{ echo prepare command failed: {shlex.quote(command)} >&2; exit 1; }}\n"
        for command in commands
    )


def deploy(host: SSHHost, base_dir: Path, filters: list[str], sweep: SweepDir) -> None:
    """Push the code and the sweep's specs and scripts (never pid files) to the host, and the
    setup bundle when the host uses the default setup."""
    sync_code(host, base_dir, filters)
    if uses_default_setup(host):
        worker_bundle(sweep.root)
    folders = [f"--include=/{folder}/***" for folder in (JOBS_DIR, SCRIPTS_DIR, BUNDLE_FOLDER)]
    sweep_filters = ["--mkpath", f"--exclude=*{PID_SUFFIX}", *folders, "--exclude=*"]
    rsync(host, [f"{sweep.root}/"], f":{host.work_dir(sweep.name)}/", sweep_filters, what="sweep sync")


def stale_block(paths: list[str]) -> str:
    """Bash removing earlier pid files of relaunched jobs, so a dead earlier worker is not taken for theirs."""
    return f"rm -f {' '.join(shlex.quote(path) for path in paths)}\n" if paths else ""


def forget_stale(host: SSHHost, sweep: str, paths: list[str]) -> None:
    """`stale_block` on a host that ran some relaunched jobs before but runs none of them now."""
    script = f"cd {shlex.quote(host.work_dir(sweep))} 2>/dev/null || exit 0\n{stale_block(paths)}"
    run_ssh(host, "bash -s", stdin=script, what="stale marker cleanup")


def start_workers(host: SSHHost, sweep: str, shards: list[Shard], before: str = "") -> str:
    """One round trip: forwarded env from stdin, the `before` bash (cleanup, setup, prepare), then
    `setsid nohup` every worker, recording its PID. Returns the remote output (`#setup ...`)."""
    lines = [env_exports(host.env), f"cd {shlex.quote(host.work_dir(sweep))} || exit 1", f"mkdir -p {LOGS_DIR}", before]
    for shard in shards:
        paths = WorkerPaths(Path(), sweep, shard.worker_id)
        lines.append(f"setsid nohup bash {paths.script} >>{paths.log} 2>&1 </dev/null & echo $! >{paths.pid}")
    return run_ssh(host, "bash -s", stdin="\n".join(lines) + "\n", what="start")


def probe_host(host: SSHHost, sweep: str) -> HostProbe:
    work = host.work_dir(sweep)
    return parse_probe(run_ssh(host, probe_command(work, f"{work}/markers"), timeout_s=POLL_TIMEOUT_S, what="poll"))


def kill_groups(host: SSHHost, groups: set[int], grace_s: int = 5) -> None:
    """SIGTERM each process group, wait up to `grace_s` (zombies count as gone), then SIGKILL."""
    if groups:
        script = KILL_SCRIPT.format(groups=shlex.quote(" ".join(map(str, sorted(groups)))), grace=int(grace_s))
        run_ssh(host, script, timeout_s=grace_s + POLL_TIMEOUT_S, what="kill")


def pull_host(host: SSHHost, sweep: str, target: Path, folders: tuple[str, ...]) -> None:
    """rsync `folders` of the host's sweep folder into `target` (half-written temp files excluded)."""
    filters = ["--exclude=.*.tmp", *(f"--include=/{folder}/***" for folder in folders), "--exclude=*"]
    rsync(host, [f":{host.work_dir(sweep)}/"], f"{target}/", ["--mkpath", *filters], what="pull")


def pull_extra_dir(host: SSHHost, path: str, base_dir: Path) -> None:
    """A job's extra folder: relative paths map project <-> remote code folder, absolute stay the same."""
    remote, local = (path, path) if path.startswith("/") else (f"{host.code_dir}/{path}", str(base_dir / path))
    rsync(host, [f":{remote.rstrip('/')}/"], f"{local.rstrip('/')}/", ["--mkpath"], what="extra folder pull")


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

    def configured(self) -> dict[str, SSHHost]:
        return {host.label: host for host in self.settings.hosts}

    def hosts_of(self, manifest: Manifest) -> dict[str, SSHHost]:
        """Hosts by label: the configured ones, overridden by those the sweep was launched on."""
        return self.configured() | hosts_from_state(manifest.state_of(HOSTS_STATE))

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
        work = host.work_dir(launch.sweep.name)
        host_disk = host.runs_dir if self.store_is_host_disk else None
        env = worker_environment(launch.env, work, shard.worker_id, workers, shard.hourly_cost_usd, host_disk)
        if host.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(slot)
        return WorkerScript(
            sweep=launch.sweep.name,
            worker_id=shard.worker_id,
            num_workers=workers,
            cwd=host.code_dir,
            log=str(WorkerPaths(Path(work), launch.sweep.name, shard.worker_id).log),
            specs=[str(JobPaths.of(job, work).spec) for job in shard.jobs],
            python=python_of(host),
            env=env,
        )

    def submit(self, launch: Launch, shards: list[Shard]) -> dict:
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
            output = start_workers(host, sweep.name, by_host[host.label], stale_block(stale) + setup + prepare)
            logger.info(f"host {host.label}: started {len(by_host[host.label])} worker(s)")
            return output

        results = on_hosts(hosts, launch_on)
        error = combined_error(results)
        previous = hosts_from_state(sweep.read_manifest().state_of(HOSTS_STATE))
        others = [host for label, host in previous.items() if label not in by_host and label not in self.unreachable]
        self.report_errors(on_hosts(others, lambda host: forget_stale(host, sweep.name, stale)), "stale marker cleanup")
        state = {HOSTS_STATE: hosts_state([*previous.values(), *hosts])}
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

        self.report_errors(on_hosts([hosts[label] for label in wanted], kill), "orphan kill")

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

        self.report_errors(on_hosts([hosts[label] for label in labels], pull), "pull")
        pull_results(store, sweep)

    def extra_pull_dirs(self, sweep: SweepDir, manifest: Manifest) -> dict[str, set[str]]:
        """Host label -> extra folders its jobs name (read from the specs once per sweep)."""
        if sweep.name not in self.extra_dirs:
            found: dict[str, set[str]] = defaultdict(set)
            for label, jobs in self.jobs_by_host(manifest).items():
                for job_id in jobs:
                    found[label].update(sweep.read_spec(job_id).extra_pull_dirs)
            self.extra_dirs[sweep.name] = found
        return self.extra_dirs[sweep.name]

    def cancel(self, sweep: SweepDir, manifest: Manifest) -> None:
        hosts = self.hosts_of(manifest)

        def stop(host: SSHHost) -> None:
            probe = probe_host(host, sweep.name)
            groups = {pgid for _, pgid in probe.job_pids.values()} | set(probe.worker_pids.values())
            kill_groups(host, groups & probe.alive_pids, self.settings.kill_grace_s)

        self.report_errors(on_hosts([hosts[label] for label in self.jobs_by_host(manifest)], stop), "cancel")

    @staticmethod
    def report_errors(results: dict[str, object], what: str) -> None:
        """A host that fails a pull or kill is retried on the next poll, so warn and go on."""
        for label, result in results.items():
            if isinstance(result, MusicsweepError):
                logger.warning(f"{what} on host {label}: {result}")
