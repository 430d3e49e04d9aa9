"""A pod's life: create it (next GPU type on no capacity), wait until SSH answers, terminate it.

Every change is written to the pod ledger at once, so a pod is never paid for unrecorded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from musicsweep.backends.base import Launch, Shard
from musicsweep.backends.runpod.api import NoCapacity, Pod, RunPodAPI, b64
from musicsweep.backends.runpod.ledger import PodLedger, PodRecord, pod_name
from musicsweep.backends.runpod.scripts import BOOT_SCRIPT
from musicsweep.backends.runpod.settings import RunPodSettings
from musicsweep.errors import MusicsweepError
from musicsweep.remote.hosts import check_host
from musicsweep.remote.ssh import HostUnreachable, SSHHost

logger = logging.getLogger(__name__)

# Credentials a pod's worker needs for the S3 store: forwarded through ssh's stdin when set here.
AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION")


class Pods:
    """Creates, readies and terminates the pods of a sweep, recording each step in its ledger."""

    def __init__(self, settings: RunPodSettings, api: Callable[[], RunPodAPI], where: str) -> None:
        self.settings = settings
        self.api = api
        self.where = where

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
                pod = self.api().get_pod(record.pod_id)
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
                pod_id = self.api().create_pod(
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

    def terminate(self, ledger: PodLedger, record: PodRecord, why: str) -> None:
        """terminate_pod (never stop_pod); the end of its paid life is recorded in the ledger."""
        sent = self.api().terminate_pod(record.pod_id)
        if record.live:
            record.ended = time.time()
            record.terminated_by = why
        ledger.save()
        logger.info(f"{'terminated' if sent else 'already gone:'} pod {record.pod_id} ({why})")

    def wait_until_gone(self, records: list[PodRecord]) -> None:
        """Give pods up to `exit_grace_s` to end by themselves (upload their last log, self-terminate)."""
        deadline = time.monotonic() + self.settings.exit_grace_s
        while records and time.monotonic() < deadline:
            time.sleep(self.settings.poll_interval_s)
            records = [r for r in records if (pod := self.api().get_pod(r.pod_id)) is not None and not pod.gone]
