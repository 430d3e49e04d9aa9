"""What the SSH, SLURM-login and RunPod backends do on a host they reach over ssh: check it, ship the
code and the setup bundle, prepare its environment, start detached workers, probe, kill and pull.

Plain functions over `SSHHost`, so that no backend imports another: `backends/ssh.py` loops over
the configured hosts, `backends/runpod/` over the pods it creates, `backends/slurm/` over its
login node. `backends.ssh` in musicsweep.yaml (`HostSettings`) also gives RunPod its rsync rules
and prepare commands.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from musicsweep.backends.base import Launch, Shard
from musicsweep.backends.probe import HostProbe, parse_probe, probe_command
from musicsweep.config import Config, typed_section
from musicsweep.contract import worker_environment
from musicsweep.errors import MusicsweepError
from musicsweep.layout import JOBS_DIR, LOGS_DIR, MARKERS_DIR, PID_SUFFIX, SCRIPTS_DIR, JobPaths, SweepDir, WorkerPaths
from musicsweep.remote.bundle import FOLDER as BUNDLE_FOLDER
from musicsweep.remote.bundle import WorkerBundle, worker_bundle
from musicsweep.remote.codesync import DEFAULT_EXCLUDES, sync_code
from musicsweep.remote.ssh import SSHHost, env_exports, rsync, run_ssh
from musicsweep.scripts import WorkerScript
from musicsweep.worker.deps import remote_check

logger = logging.getLogger(__name__)

# Used when a host names neither `python` nor `setup`, in `{remote_dir}/code`: installs uv if
# missing, makes `.venv`, and installs the pinned runtime dependencies and this project's wheel
# from the bundle that `deploy` pushed (never the dev group, never musicsweep from an index; with no
# lock, `constraints.txt` pins the launcher's installed versions). Each
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
  install -c "$bundle/constraints.txt" --reinstall-package musicsweep "musicsweep[worker] @ file://$bundle/$MUSICSWEEP_WHEEL"
fi
"""
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
class HostSettings:
    """`backends.ssh` in musicsweep.yaml."""

    hosts: tuple[SSHHost, ...] = ()
    rsync_include: tuple[str, ...] = ()
    rsync_exclude: tuple[str, ...] = DEFAULT_EXCLUDES
    prepare: tuple[str, ...] = ()
    kill_grace_s: int = 5


def parse_settings(config: Config) -> HostSettings:
    where = config.where("backends.ssh")
    settings = typed_section(HostSettings, config.backend_section("ssh"), where)
    seen: set[str] = set()
    for index, host in enumerate(settings.hosts):
        host.check(f"{where}.hosts[{index}]")
        if host.label in seen:
            raise MusicsweepError(f"{where}.hosts[{index}]: host {host.label!r} is listed twice (give it a 'name')")
        seen.add(host.label)
    return settings


def hosts_from_state(state: dict[str, dict]) -> dict[str, SSHHost]:
    """Host entries as a manifest or ledger keeps them (`asdict` of each), by label."""
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


def start_workers(host: SSHHost, sweep: str, launch_id: str, shards: list[Shard], before: str = "") -> str:
    """One round trip: forwarded env from stdin, the `before` bash (cleanup, setup, prepare), then
    `setsid nohup` every worker, recording its PID. Returns the remote output (`#setup ...`)."""
    lines = [env_exports(host.env), f"cd {shlex.quote(host.work_dir(sweep))} || exit 1", f"mkdir -p {LOGS_DIR}", before]
    for shard in shards:
        paths = WorkerPaths(Path(), sweep, shard.worker_id, launch_id)
        lines.append(f"setsid nohup bash {paths.script} >>{paths.log} 2>&1 </dev/null & echo $! >{paths.pid}")
    return run_ssh(host, "bash -s", stdin="\n".join(lines) + "\n", what="start")


def probe_host(host: SSHHost, sweep: str) -> HostProbe:
    work = host.work_dir(sweep)
    return parse_probe(
        run_ssh(host, probe_command(work, f"{work}/{MARKERS_DIR}"), timeout_s=POLL_TIMEOUT_S, what="poll")
    )


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


def host_worker_script(
    launch: Launch, shard: Shard, host: SSHHost, slot: int, workers: int, host_disk: bool
) -> WorkerScript:
    """One worker's script on `host`; `host_disk` keeps results in the host's own runs folder."""
    work = host.work_dir(launch.sweep.name)
    store = host.runs_dir if host_disk else None
    env = worker_environment(launch.env, work, shard.worker_id, workers, shard.hourly_cost_usd, store)
    if host.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(slot)
    return WorkerScript(
        sweep=launch.sweep.name,
        worker_id=shard.worker_id,
        num_workers=workers,
        cwd=host.code_dir,
        log=str(WorkerPaths(Path(work), launch.sweep.name, shard.worker_id, launch.launch_id).log),
        specs=[str(JobPaths.of(job, work).spec) for job in shard.jobs],
        python=python_of(host),
        env=env,
    )


def warn_failures(results: dict[str, object], what: str) -> None:
    """A host that fails a pull or kill is retried on the next poll, so warn and go on."""
    for label, result in results.items():
        if isinstance(result, MusicsweepError):
            logger.warning(f"{what} on host {label}: {result}")
