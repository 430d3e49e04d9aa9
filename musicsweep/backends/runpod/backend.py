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

Modules: `settings` (musicsweep.yaml), `api` (the SDK, with retries), `ledger` (pods.json/csv),
`pods` (create, ready, terminate), `scripts` (the pod's bash), `poll` (what a poll sees),
`billing` (prices and paid time); this module only runs the lifecycle over them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from functools import cached_property
from pathlib import Path

from musicsweep.backends.base import Backend, Launch, Shard, balanced_shards
from musicsweep.backends.runpod.api import Retry, RunPodAPI, api_key_from
from musicsweep.backends.runpod.billing import PodBilling
from musicsweep.backends.runpod.ledger import PodLedger, PodRecord, named_after, record_of_stray
from musicsweep.backends.runpod.pods import Pods
from musicsweep.backends.runpod.poll import PodPoll, Termination, jobs_of_workers, marker_states
from musicsweep.backends.runpod.scripts import self_terminate
from musicsweep.backends.runpod.settings import RunPodSettings
from musicsweep.config import Config, typed_section
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import LOGS_DIR, SweepDir, list_markers
from musicsweep.manifest import BackendState, Manifest
from musicsweep.remote.codesync import code_filters
from musicsweep.remote.hosts import (
    deploy,
    environment_setup,
    host_worker_script,
    parse_settings,
    prepare_block,
    pull_host,
    python_of,
    start_workers,
    warn_failures,
)
from musicsweep.remote.ssh import SSHHost, combined_error, on_hosts
from musicsweep.scripts import write_script
from musicsweep.states import FINISHED_STATES, JobState
from musicsweep.store import open_store
from musicsweep.store.pull import pull_results

logger = logging.getLogger(__name__)


class RunPodBackend(Backend):
    name = "runpod"
    pending_is_seen = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.where = config.where("backends.runpod")
        self.settings = typed_section(RunPodSettings, config.backend_section("runpod"), self.where)
        self.host_settings = parse_settings(config)  # `backends.ssh`: rsync rules and prepare commands
        self.billing: PodBilling = PodBilling(self.settings, lambda: self.api)
        self.pods = Pods(self.settings, lambda: self.api, self.where)
        self.to_terminate: list[Termination] = []  # from the last poll, for `reconcile`

    @cached_property
    def api(self) -> RunPodAPI:
        key = api_key_from(self.settings.api_key, self.where)
        return RunPodAPI(key, Retry(self.settings.api_attempts, self.settings.api_backoff_s))

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
        self.billing.load_prices()
        unknown = [gpu for gpu in self.settings.gpu_types if gpu not in self.billing.gpu_prices]
        if unknown:
            raise MusicsweepError(f"{self.where}.gpu_types: unknown GPU type {unknown[0]!r} (see runpod.get_gpus())")

    def shard(self, jobs: list[Job]) -> list[Shard]:
        rate = self.billing.hourly_usd()
        return balanced_shards(jobs, [(f"runpod-{index}", rate) for index in range(self.settings.pods)])

    # ---- launch
    def submit(self, launch: Launch, shards: list[Shard]) -> BackendState | None:
        """The pod ledger, not the manifest, keeps what this backend knows of the sweep."""
        ledger = PodLedger(launch.sweep)
        try:
            ready = self.pods.provision(ledger, launch, shards)
            self.start(launch, shards, ready)
        except BaseException:
            for record in [r for r in ledger.pods.values() if r.live and r.launch_id == launch.launch_id]:
                try:
                    self.pods.terminate(ledger, record, "failed launch")
                except MusicsweepError as error:
                    logger.warning(f"{error}; run `python -m musicsweep.auto_pull --cleanup`")
            raise
        return None

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
            env_file = self.settings.pod_env_file.format(pod_id=record.pod_id)
            epilogue = self_terminate(python_of(host), script.specs, env_file)
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
            return start_workers(host, sweep.name, launch.launch_id, [shard], setup + prepare)

        results = on_hosts([host for host, _ in by_label.values()], launch_on)
        error = combined_error(results)
        if error is not None:
            raise error
        logger.info(f"started {len(shards)} worker(s) on {len(shards)} pod(s)")

    # ---- auto_pull
    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        """Read-only: a pod that is gone, whose jobs are all finished, or were all relaunched
        elsewhere is only noted in `self.to_terminate`, for `reconcile` to terminate."""
        poll = PodPoll(self.api, self.settings.ready_timeout_s)
        states = poll.states(sweep, manifest, lambda: self.markers(sweep))
        self.to_terminate = poll.done_with
        return states

    def reconcile(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Terminate what the last poll found finished, gone or superseded, and record it in the ledger."""
        ledger = PodLedger(sweep)
        for pod_id, why, final_states in self.to_terminate:
            record = ledger.pods.get(pod_id)
            if record is not None and record.live:
                record.final_states = final_states or record.final_states
                self.pods.terminate(ledger, record, why)
        self.to_terminate = []

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        """A pod runs one worker, so its orphan is killed for good by terminating the pod."""
        ledger = PodLedger(sweep)
        for key, owned in jobs_of_workers(manifest).items():
            record = ledger.running(*key)
            if record is not None and record.live and set(owned) & set(job_ids):
                self.pods.terminate(ledger, record, "orphan worker")

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
            self.pods.terminate(ledger, record, "cancelled")

    def markers(self, sweep: SweepDir) -> set[str]:
        return list_markers(open_store(self.config.store), sweep.name)

    def cleanup(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Terminate every pod of the sweep: those in the ledger and any pod named after the sweep,
        whether or not this machine created it. Pods whose jobs are all finished first get
        `exit_grace_s` to upload their last log and terminate themselves."""
        ledger = PodLedger(sweep)
        finishing = self.finishing(ledger, sweep, manifest)
        if finishing:
            self.pods.wait_until_gone(finishing)
            pull_results(open_store(self.config.store), sweep)
        live = {record.pod_id: record for record in ledger.pods.values() if record.live}
        for pod in self.api.list_pods():
            if named_after(pod.name, sweep.name) and pod.desired_status != "TERMINATED" and pod.id not in live:
                live[pod.id] = ledger.pods.get(pod.id) or record_of_stray(pod.id, pod.name, pod.cost_per_hr)
        for record in live.values():
            ledger.pods.setdefault(record.pod_id, record)
            self.pods.terminate(ledger, record, "cleanup")

    def finishing(self, ledger: PodLedger, sweep: SweepDir, manifest: Manifest) -> list[PodRecord]:
        """Live pods whose jobs all have markers: their workers are uploading and ending."""
        markers = self.markers(sweep)
        finishing = []
        for key, job_ids in jobs_of_workers(manifest).items():
            record = ledger.running(*key)
            states = marker_states(job_ids, markers, JobState.LOST, key[0]).values()
            if record is not None and record.live and all(state in FINISHED_STATES for state in states):
                finishing.append(record)
        return finishing
