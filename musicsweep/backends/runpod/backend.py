"""RunPod backend: one on-demand GPU pod per worker, deployed and run over SSH, never left running.

Pods are on-demand only: RunPod is withdrawing interruptible (spot) pods from its API. Each pod is
created with the first GPU type of `gpu_types` that has capacity (default `NVIDIA L40S`), a
public port 22 and the user's public key (`PUBLIC_KEY`). Once `get_pod` shows it RUNNING with a
public port 22 and SSH answers, the SSH backend's machinery deploys the code and starts the
worker; S3 credentials travel through ssh's stdin, never through pod env. A pod that is not ready
within `ready_timeout_s` (cold image pulls are slow, hence 15 min) is terminated and the next
GPU type is tried.

Pods are terminated, never stopped (a stopped pod still bills for its disk): by auto_pull once all
of a pod's jobs are finished, by the pod itself at the end of its script (a backstop, with its
pod-scoped key), and by `auto_pull --cleanup`, which terminates every pod named after the sweep.
Each pod's life (creation to termination, `costPerHr`) is kept in `{sweep}/runpod/pods.json` and
reported as the paid machine time of its worker.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import re
import shlex
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from musicsweep.atomic import atomic_write_json, atomic_write_text
from musicsweep.backends.base import Backend, Launch, Shard, balanced_shards
from musicsweep.backends.probe import HostProbe, classify
from musicsweep.backends.runpod.api import NoCapacity, Pod, Retry, RunPodAPI, api_key_from, b64
from musicsweep.config import Config, typed_section
from musicsweep.costs.summary import MachineTime, WorkerKey
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import LOGS_DIR, SweepDir, list_markers
from musicsweep.manifest import Manifest
from musicsweep.remote.codesync import code_filters
from musicsweep.remote.hosts import (
    check_host,
    deploy,
    environment_setup,
    host_worker_script,
    hosts_from_state,
    parse_settings,
    prepare_block,
    probe_host,
    pull_host,
    python_of,
    start_workers,
    warn_failures,
)
from musicsweep.remote.ssh import HostUnreachable, SSHHost, combined_error, on_hosts
from musicsweep.scripts import write_script
from musicsweep.states import FINISHED_STATES, JobState, marker_state
from musicsweep.store import open_store
from musicsweep.store.pull import pull_results

logger = logging.getLogger(__name__)

CLOUD_TYPES = ("ALL", "SECURE", "COMMUNITY")
# Credentials a pod's worker needs for the S3 store: forwarded through ssh's stdin when set here.
AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION")
# The pod's start command (base64, since the SDK does not escape GraphQL strings): decode the
# base64 PUBLIC_KEY, then hand over to the image's own /start.sh (sshd, /etc/rp_environment);
# images without one get authorized_keys, the RUNPOD_ variables in /etc/rp_environment, and sshd.
BOOT_SCRIPT = """\
PUBLIC_KEY="$(printf %s "$PUBLIC_KEY" | base64 -d)"; export PUBLIC_KEY
if [ -x /start.sh ]; then exec /start.sh; fi
mkdir -p ~/.ssh /run/sshd && chmod 700 ~/.ssh
printf '%s\\n' "$PUBLIC_KEY" >>~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys
for name in RUNPOD_POD_ID RUNPOD_API_KEY; do printf 'export %s=%q\\n' "$name" "${!name:-}"; done >/etc/rp_environment
chmod 600 /etc/rp_environment
exec /usr/sbin/sshd -D
"""
# Appended to the worker's script: the pod terminates itself once its worker has exited. A worker
# that ended early first marks its unfinished clips failed: once the pod is gone, auto_pull could
# no longer tell them from the jobs of a pod that was lost.
SELF_TERMINATE = """\
if [ "$worker_status" -ne 0 ]; then {python} -m musicsweep.worker.finish "$worker_status" {specs}; fi
# RunPod backstop: terminate this pod with its own pod-scoped key (RUNPOD_POD_ID, RUNPOD_API_KEY).
if [ -r {env_file} ]; then . {env_file}; fi
{python} -m musicsweep.backends.runpod.api terminate-self
"""


@dataclass(frozen=True)
class RunPodSettings:
    """`backends.runpod` in musicsweep.yaml. `remote_dir` and `pod_env_file` may name `{pod_id}`."""

    pods: int = 1
    gpu_types: tuple[str, ...] = ("NVIDIA L40S",)
    cloud_type: str = "SECURE"
    image: str = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
    container_disk_gb: int = 50
    volume_gb: int = 0
    public_key_file: str = "~/.ssh/id_ed25519.pub"
    identity_file: str = "~/.ssh/id_ed25519"
    user: str = "root"
    remote_dir: str = "/workspace/musicsweep"
    pod_env_file: str = "/etc/rp_environment"
    python: str | None = None
    setup: str | None = None
    env: tuple[str, ...] = ()
    ready_timeout_s: float = 900.0
    poll_interval_s: float = 5.0
    exit_grace_s: float = 60.0
    api_key: str | None = None
    api_attempts: int = 5
    api_backoff_s: float = 1.0

    def check(self, where: str) -> None:
        if self.pods < 1:
            raise MusicsweepError(f"{where}.pods: must be at least 1, got {self.pods}")
        if not self.gpu_types:
            raise MusicsweepError(f"{where}.gpu_types: list at least one GPU type")
        if self.cloud_type not in CLOUD_TYPES:
            raise MusicsweepError(f"{where}.cloud_type: expected one of {list(CLOUD_TYPES)}, got {self.cloud_type!r}")
        if min(self.ready_timeout_s, self.poll_interval_s, self.api_attempts) <= 0 or self.exit_grace_s < 0:
            raise MusicsweepError(
                f"{where}: 'ready_timeout_s', 'poll_interval_s', 'api_attempts' and 'exit_grace_s' must be positive"
            )
        for key in ("remote_dir", "pod_env_file"):
            try:
                getattr(self, key).format(pod_id="x")
            except (KeyError, IndexError, ValueError):
                raise MusicsweepError(f"{where}.{key}: only '{{pod_id}}' may appear in braces") from None
        for key in ("public_key_file", "identity_file"):
            if not Path(getattr(self, key)).expanduser().is_file():
                raise MusicsweepError(f"{where}.{key}: no such file: {getattr(self, key)}")


@dataclass
class PodRecord:
    """One pod this sweep created: which worker it runs, how to reach it, and its paid life."""

    pod_id: str
    name: str
    gpu_type: str
    launch_id: str
    worker_id: int
    created: float
    cost_per_hr: float = 0.0
    host: dict | None = None  # the SSHHost entry, once the pod is ready
    ended: float | None = None
    terminated_by: str | None = None
    final_states: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.ended is None

    def ssh_host(self) -> SSHHost:
        return hosts_from_state({self.pod_id: self.host})[self.pod_id]


class PodLedger:
    """`{sweep}/runpod/pods.json`: every pod of the sweep, written after each change."""

    def __init__(self, sweep: SweepDir) -> None:
        self.path = sweep.root / "runpod" / "pods.json"
        self.costs_path = sweep.root / "runpod" / "pods.csv"
        raw = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.pods = {pod_id: PodRecord(**entry) for pod_id, entry in raw.items()}

    def save(self) -> None:
        atomic_write_json(self.path, {pod_id: dataclasses.asdict(r) for pod_id, r in self.pods.items()})
        self.write_costs()

    def add(self, record: PodRecord) -> None:
        self.pods[record.pod_id] = record
        self.save()

    def running(self, launch_id: str, worker_id: int) -> PodRecord | None:
        """The pod that was given this worker (the last one created for it, i.e. the ready one)."""
        matches = [r for r in self.pods.values() if (r.launch_id, r.worker_id) == (launch_id, worker_id) and r.host]
        return max(matches, key=lambda r: r.created) if matches else None

    def write_costs(self) -> None:
        """pods.csv: each pod's lifetime and price, discarded (never ready) pods included."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["pod_id", "gpu_type", "launch_id", "worker_id", "created", "ended", "hours", "cost_per_hr", "cost"]
        )
        now = time.time()
        for r in sorted(self.pods.values(), key=lambda r: r.created):
            hours = ((r.ended or now) - r.created) / 3600.0
            row = [r.pod_id, r.gpu_type, r.launch_id, r.worker_id, r.created, r.ended or "", f"{hours:.6f}"]
            writer.writerow([*row, r.cost_per_hr, f"{hours * r.cost_per_hr:.6f}"])
        atomic_write_text(self.costs_path, buffer.getvalue())


def pod_name(sweep: str, launch_id: str, worker_id: int) -> str:
    """Space-separated, since sweep names cannot hold spaces: `--cleanup` matches the sweep exactly."""
    return f"musicsweep {sweep} {launch_id} w{worker_id}"


def named_after(name: str, sweep: str) -> bool:
    parts = name.split(" ")
    return len(parts) == 4 and parts[:2] == ["musicsweep", sweep] and re.fullmatch(r"w\d+", parts[3]) is not None


def marker_states(job_ids: list[str], markers: set[str], missing: JobState, launch_id: str) -> dict[str, JobState]:
    """States from the store's markers alone, for jobs of one pod (one launch) that is gone."""
    return {job_id: marker_state(job_id, launch_id, markers) or missing for job_id in job_ids}


class RunPodBackend(Backend):
    name = "runpod"
    spends_money = True
    boots_machines = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.where = config.where("backends.runpod")
        self.settings = typed_section(RunPodSettings, config.backend_section("runpod"), self.where)
        self.host_settings = parse_settings(config)  # `backends.ssh`: rsync rules and prepare commands
        self._api: RunPodAPI | None = None
        self.gpu_prices: dict[str, float] = {}
        self.to_terminate: list[tuple[str, str, dict[str, str]]] = []  # (pod id, why, final states) from poll

    @property
    def api(self) -> RunPodAPI:
        if self._api is None:
            key = api_key_from(self.settings.api_key, self.where)
            retry = Retry(self.settings.api_attempts, self.settings.api_backoff_s)
            self._api = RunPodAPI(key, retry)
        return self._api

    # ---- before launch
    def validate(self, dry_run: bool = False) -> None:
        self.settings.check(self.where)
        if not self.config.store.url.startswith("s3://"):
            raise MusicsweepError(
                f"{self.config.source}: key 'store': the runpod backend needs an s3:// store "
                "(pods are terminated at the end, and cannot write to this machine's disk)"
            )
        if not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(os.environ):
            raise MusicsweepError(
                "runpod backend: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY here; pods get S3 credentials "
                "only through ssh, from this environment"
            )
        missing = [name for name in self.settings.env if name not in os.environ]
        if missing:
            raise MusicsweepError(f"{self.where}.env: {missing[0]} is not set in this environment")
        self.load_prices()
        unknown = [gpu for gpu in self.settings.gpu_types if gpu not in self.gpu_prices]
        if unknown:
            raise MusicsweepError(f"{self.where}.gpu_types: unknown GPU type {unknown[0]!r} (see runpod.get_gpus())")

    def load_prices(self) -> None:
        """GPU type -> on-demand $/h for the configured cloud type, for the estimate before launch."""
        price_key = "communityPrice" if self.settings.cloud_type == "COMMUNITY" else "securePrice"
        for gpu_id, gpu in self.api.gpu_types().items():
            self.gpu_prices[gpu_id] = float(gpu.get(price_key) or 0.0)

    def shard(self, jobs: list[Job]) -> list[Shard]:
        if not self.gpu_prices:
            self.load_prices()
        rate = self.gpu_prices.get(self.settings.gpu_types[0], 0.0)
        return balanced_shards(jobs, [(f"runpod-{index}", rate) for index in range(self.settings.pods)])

    def machine_kind(self, shard: Shard) -> str:
        return self.settings.gpu_types[0]  # the type priced above, and calibrated as

    # ---- launch
    def submit(self, launch: Launch, shards: list[Shard]) -> dict:
        ledger = PodLedger(launch.sweep)
        try:
            ready = self.provision(ledger, launch, shards)
            self.start(launch, shards, ready)
        except BaseException:
            for record in [r for r in ledger.pods.values() if r.live and r.launch_id == launch.launch_id]:
                try:
                    self.terminate(ledger, record, "failed launch")
                except MusicsweepError as error:
                    logger.warning(f"{error}; run `python -m musicsweep.auto_pull --cleanup`")
            raise
        return {}

    def provision(self, ledger: PodLedger, launch: Launch, shards: list[Shard]) -> dict[int, PodRecord]:
        """A ready pod per shard: create (next GPU type on no capacity), wait, replace on deadline."""
        types_left = {shard.worker_id: list(self.settings.gpu_types) for shard in shards}
        waiting: dict[int, PodRecord] = {}
        ready: dict[int, PodRecord] = {}
        while len(ready) < len(shards):
            for shard in shards:
                worker = shard.worker_id
                if worker in ready:
                    continue
                if worker not in waiting:
                    waiting[worker] = self.create(ledger, launch, worker, types_left[worker])
                    continue
                record = waiting[worker]
                pod = self.api.get_pod(record.pod_id)
                if pod is not None and not record.cost_per_hr:
                    record.cost_per_hr = pod.cost_per_hr
                if pod is not None and pod.ready and self.answers_ssh(record, pod):
                    ready[worker] = waiting.pop(worker)
                    ledger.save()
                    logger.info(f"pod {record.pod_id} ({record.gpu_type}) is ready for worker {worker}")
                elif pod is None or pod.gone or time.time() > record.created + self.settings.ready_timeout_s:
                    self.terminate(ledger, record, f"not ready within {self.settings.ready_timeout_s:g}s")
                    del waiting[worker]
                    if not types_left[worker]:
                        raise MusicsweepError(
                            f"{self.where}.gpu_types: no pod became ready within ready_timeout_s "
                            f"({self.settings.ready_timeout_s:g}s) on any of {list(self.settings.gpu_types)}"
                        )
            if len(ready) < len(shards):
                time.sleep(self.settings.poll_interval_s)
        return ready

    def create(self, ledger: PodLedger, launch: Launch, worker: int, types_left: list[str]) -> PodRecord:
        """An on-demand pod of the first type in `types_left` with capacity (tried types are removed)."""
        public_key = Path(self.settings.public_key_file).expanduser().read_text().strip()
        name = pod_name(launch.sweep.name, launch.launch_id, worker)
        while types_left:
            gpu_type = types_left.pop(0)
            try:
                pod_id = self.api.create_pod(
                    name,
                    gpu_type,
                    image_name=self.settings.image,
                    cloud_type=self.settings.cloud_type,
                    support_public_ip=True,
                    start_ssh=True,
                    container_disk_in_gb=self.settings.container_disk_gb,
                    volume_in_gb=self.settings.volume_gb,
                    ports="22/tcp",
                    env={"PUBLIC_KEY": b64(public_key)},
                    docker_args=f"bash -c 'echo {b64(BOOT_SCRIPT)} | base64 -d | bash'",
                )
            except NoCapacity:
                logger.info(f"no {gpu_type} capacity: trying the next GPU type")
                continue
            record = PodRecord(pod_id, name, gpu_type, launch.launch_id, worker, time.time())
            ledger.add(record)
            logger.info(f"created pod {pod_id} ({gpu_type}) for worker {worker}")
            return record
        raise MusicsweepError(f"{self.where}.gpu_types: no capacity on any of {list(self.settings.gpu_types)}")

    def answers_ssh(self, record: PodRecord, pod: Pod) -> bool:
        """Build the pod's SSH host entry and check it (one round trip); False while sshd is not up."""
        ip, port = pod.public_ssh
        host = SSHHost(
            host=ip,
            port=port,
            user=self.settings.user,
            identity_file=self.settings.identity_file,
            remote_dir=self.settings.remote_dir.format(pod_id=record.pod_id),
            name=f"pod-{record.pod_id}",
            python=self.settings.python,
            setup=self.settings.setup,
            env=tuple(name for name in (*AWS_ENV, *self.settings.env) if name in os.environ),
            retries=0,
        )
        try:
            check_host(host)
        except HostUnreachable:
            return False
        record.host = dataclasses.asdict(dataclasses.replace(host, retries=2, backoff_s=1.0))
        return True

    def start(self, launch: Launch, shards: list[Shard], ready: dict[int, PodRecord]) -> None:
        """Write each worker's script (with the pod's price and self-termination), deploy and start."""
        sweep = launch.sweep
        api_url = os.environ.get("RUNPOD_API_BASE_URL")
        by_label: dict[str, tuple[SSHHost, Shard]] = {}
        for shard in shards:
            record = ready[shard.worker_id]
            host = record.ssh_host()
            shard.hourly_cost_usd = record.cost_per_hr
            script = host_worker_script(launch, shard, host, 0, len(shards), host_disk=False)
            env = script.env | ({"RUNPOD_API_BASE_URL": api_url} if api_url else {})
            env_file = shlex.quote(self.settings.pod_env_file.format(pod_id=record.pod_id))
            specs = " ".join(shlex.quote(spec) for spec in script.specs)
            epilogue = SELF_TERMINATE.format(env_file=env_file, python=shlex.quote(python_of(host)), specs=specs)
            script = dataclasses.replace(script, env=env, epilogue=epilogue)
            write_script(sweep.worker(shard.worker_id).script, script.render())
            by_label[host.label] = (host, shard)
        filters = code_filters(
            self.config.base_dir,
            list(self.host_settings.rsync_include),
            list(self.host_settings.rsync_exclude),
            [Path(self.config.sweeps_dir)],
        )

        def launch_on(host: SSHHost) -> str:
            shard = by_label[host.label][1]
            deploy(host, self.config.base_dir, filters, sweep)
            setup = environment_setup(host, sweep, self.config.base_dir)
            prepare = prepare_block(host, self.host_settings.prepare)
            return start_workers(host, sweep.name, [shard], setup + prepare)

        results = on_hosts([host for host, _ in by_label.values()], launch_on)
        error = combined_error(results)
        if error is not None:
            raise error
        logger.info(f"started {len(shards)} worker(s) on {len(shards)} pod(s)")

    # ---- auto_pull
    def owners(self, manifest: Manifest) -> dict[tuple[str, int], list[str]]:
        grouped: dict[tuple[str, int], list[str]] = defaultdict(list)
        for job_id, entry in manifest.jobs.items():
            if entry.assigned and entry.launch:
                grouped[(entry.launch, entry.worker)].append(job_id)
        return grouped

    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        """Pod state from the API, process state over SSH (one round trip per live pod), markers from S3.

        Read-only: jobs of a pod that is gone (exited, terminated by itself, or lost) and have no
        marker are `lost`; a pod that is gone, whose jobs are all finished, or were all relaunched
        elsewhere is only noted in `self.to_terminate`, for `reconcile` to terminate.
        """
        ledger = PodLedger(sweep)
        states: dict[str, str] = {}
        self.to_terminate = []
        owners = self.owners(manifest)
        # The manifest on disk, not auto_pull's copy: a launch running elsewhere writes it before its pods exist.
        on_disk = sweep.read_manifest_if_any()
        current = self.owners(on_disk) if on_disk else owners
        for record in [r for r in ledger.pods.values() if r.live and r.host]:
            if (record.launch_id, record.worker_id) not in current:
                self.to_terminate.append((record.pod_id, "its jobs were relaunched elsewhere", {}))
        superseded = {pod_id for pod_id, _, _ in self.to_terminate}
        probes = {
            key: self.probe_pod(record, sweep.name)
            for key in owners
            if (record := ledger.running(*key)) is not None and record.live and record.pod_id not in superseded
        }
        # The markers after the pods' processes: a clip that finishes in between is never taken for
        # one whose worker died without finishing it.
        markers = self.markers(sweep)
        for (launch_id, worker), job_ids in owners.items():
            record = ledger.running(launch_id, worker)
            if (launch_id, worker) in probes:
                states |= self.pod_states(record, job_ids, markers, probes[(launch_id, worker)])
            elif record is None:
                # A pod still being provisioned (created, not ready, within its deadline): its jobs wait.
                waiting = self.provisioning(ledger, launch_id, worker)
                states |= marker_states(job_ids, markers, JobState.PENDING if waiting else JobState.FAILED, launch_id)
            else:
                states |= marker_states(job_ids, markers, JobState.LOST, launch_id)
                states |= {job_id: record.final_states[job_id] for job_id in job_ids if job_id in record.final_states}
        return states

    def provisioning(self, ledger: PodLedger, launch_id: str, worker: int) -> bool:
        """A live pod of this worker awaits readiness; without one, its launch failed before a pod was ready."""
        since = time.time() - self.settings.ready_timeout_s
        return any(
            (r.launch_id, r.worker_id) == (launch_id, worker) and r.live and r.host is None and r.created > since
            for r in ledger.pods.values()
        )

    def probe_pod(self, record: PodRecord, sweep: str) -> HostProbe | None:
        """The pod's processes, in one round trip; None when it is gone (noted for `reconcile`) or silent."""
        pod = self.api.get_pod(record.pod_id)
        if pod is None or pod.gone:
            self.to_terminate.append((record.pod_id, "gone" if pod is None else pod.desired_status.lower(), {}))
            return None
        try:
            return probe_host(record.ssh_host(), sweep)
        except HostUnreachable:
            return None

    def pod_states(
        self, record: PodRecord, job_ids: list[str], markers: set[str], probe: HostProbe | None
    ) -> dict[str, str]:
        if probe is None:
            return marker_states(job_ids, markers, JobState.LOST, record.launch_id)
        probe.markers = markers
        states = classify(dict.fromkeys(job_ids, record.worker_id), probe, dict.fromkeys(job_ids, record.launch_id))
        if all(state in FINISHED_STATES for state in states.values()):
            self.to_terminate.append((record.pod_id, "all its jobs finished", dict(states)))
        return states

    def reconcile(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Terminate what the last poll found finished, gone or superseded, and record it in the ledger."""
        ledger = PodLedger(sweep)
        for pod_id, why, final_states in self.to_terminate:
            record = ledger.pods.get(pod_id)
            if record is not None and record.live:
                record.final_states = final_states or record.final_states
                self.terminate(ledger, record, why)
        self.to_terminate = []

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        """A pod runs one worker, so its orphan is killed for good by terminating the pod."""
        ledger = PodLedger(sweep)
        for key, owned in self.owners(manifest).items():
            record = ledger.running(*key)
            if record is not None and record.live and set(owned) & set(job_ids):
                self.terminate(ledger, record, "orphan worker")

    def fetch(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Script logs from live pods (rsync), then everything else from the S3 store."""
        ledger = PodLedger(sweep)
        hosts = [record.ssh_host() for record in ledger.pods.values() if record.live and record.host]
        results = on_hosts(hosts, lambda host: pull_host(host, sweep.name, sweep.root, (LOGS_DIR,)))
        warn_failures(results, "log pull")
        pull_results(open_store(self.config.store), sweep)

    def cancel(self, sweep: SweepDir, manifest: Manifest) -> None:
        ledger = PodLedger(sweep)
        for record in [r for r in ledger.pods.values() if r.live]:
            self.terminate(ledger, record, "cancelled")

    def markers(self, sweep: SweepDir) -> set[str]:
        return list_markers(open_store(self.config.store), sweep.name)

    def cleanup(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Terminate every pod of the sweep: those in the ledger and any pod named after the sweep,
        whether or not this machine created it. Pods whose jobs are all finished first get
        `exit_grace_s` to upload their last log and terminate themselves."""
        ledger = PodLedger(sweep)
        if self.await_self_termination(ledger, sweep, manifest):
            pull_results(open_store(self.config.store), sweep)
        live = {record.pod_id: record for record in ledger.pods.values() if record.live}
        for pod in self.api.list_pods():
            if named_after(pod.name, sweep.name) and pod.desired_status != "TERMINATED" and pod.id not in live:
                parts = pod.name.split(" ")
                live[pod.id] = ledger.pods.get(pod.id) or PodRecord(
                    pod.id, pod.name, "", parts[2], int(parts[3][1:]), time.time(), pod.cost_per_hr
                )
        for record in live.values():
            ledger.pods.setdefault(record.pod_id, record)
            self.terminate(ledger, record, "cleanup")

    def await_self_termination(self, ledger: PodLedger, sweep: SweepDir, manifest: Manifest) -> bool:
        """Wait up to `exit_grace_s` for live pods whose jobs all have markers to end; True if any did wait."""
        markers = self.markers(sweep)
        finishing = []
        for key, job_ids in self.owners(manifest).items():
            record = ledger.running(*key)
            if (
                record is not None
                and record.live
                and all(s in FINISHED_STATES for s in marker_states(job_ids, markers, JobState.LOST, key[0]).values())
            ):
                finishing.append(record)
        deadline = time.monotonic() + self.settings.exit_grace_s
        waited = bool(finishing)
        while finishing and time.monotonic() < deadline:
            time.sleep(self.settings.poll_interval_s)
            finishing = [r for r in finishing if (pod := self.api.get_pod(r.pod_id)) is not None and not pod.gone]
        return waited

    def terminate(self, ledger: PodLedger, record: PodRecord, why: str) -> None:
        """terminate_pod (never stop_pod); the end of its paid life is recorded in the ledger."""
        sent = self.api.terminate_pod(record.pod_id)
        if record.live:
            record.ended = time.time()
            record.terminated_by = why
        ledger.save()
        logger.info(f"{'terminated' if sent else 'already gone:'} pod {record.pod_id} ({why})")

    def worker_machines(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, str]:
        ran = [record for record in PodLedger(sweep).pods.values() if record.host is not None]
        return {(record.launch_id, record.worker_id): record.gpu_type for record in ran}

    def machine_times(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, MachineTime]:
        """Each worker's pods, creation to termination, at their costPerHr.

        Pods discarded on the way (not ready in time) were paid too: they count towards the worker
        that replaced them, as one span from the first creation at the rate that gives their total.
        """
        pods: dict[WorkerKey, list[PodRecord]] = defaultdict(list)
        for record in PodLedger(sweep).pods.values():
            pods[(record.launch_id, record.worker_id)].append(record)
        now = time.time()
        times: dict[WorkerKey, MachineTime] = {}
        for key, records in pods.items():
            if any(record.host is not None for record in records):
                start = min(record.created for record in records)
                end = max(record.ended or now for record in records)
                paid = sum(((record.ended or now) - record.created) * record.cost_per_hr for record in records)
                times[key] = MachineTime(start, end, paid / (end - start) if end > start else 0.0)
        return times
