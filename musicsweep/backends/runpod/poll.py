"""What a poll sees of a sweep's pods: the API's pod state, the processes over SSH (one round trip
per live pod), and the store's markers. Read-only: pods to terminate are only noted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from musicsweep.backends.probe import HostProbe, classify
from musicsweep.backends.runpod.api import RunPodAPI
from musicsweep.backends.runpod.ledger import PodLedger, PodRecord
from musicsweep.billing import WorkerKey
from musicsweep.layout import SweepDir
from musicsweep.manifest import Manifest
from musicsweep.remote.hosts import probe_host
from musicsweep.remote.ssh import HostUnreachable
from musicsweep.states import FINISHED_STATES, JobState, marker_state


class Termination(NamedTuple):
    """A pod a poll found done with, why, and its jobs' last states (kept in the ledger)."""

    pod_id: str
    why: str
    final_states: dict[str, str]


def jobs_of_workers(manifest: Manifest) -> dict[WorkerKey, list[str]]:
    """(launch id, worker id) -> its jobs: a pod runs exactly one worker."""
    grouped: dict[WorkerKey, list[str]] = defaultdict(list)
    for job_id, entry in manifest.jobs.items():
        if entry.assigned and entry.launch:
            grouped[(entry.launch, entry.worker)].append(job_id)
    return grouped


def marker_states(job_ids: list[str], markers: set[str], missing: JobState, launch_id: str) -> dict[str, JobState]:
    """States from the store's markers alone, for jobs of one pod (one launch) that is gone."""
    return {job_id: marker_state(job_id, launch_id, markers) or missing for job_id in job_ids}


def gone_pod_states(record: PodRecord, job_ids: list[str], markers: set[str]) -> dict[str, JobState]:
    """Jobs of a terminated pod: their markers first, since another worker may finish a clip the pod
    left (it took it from the pod's shard) after the pod was gone; else the states its last poll saw."""
    return {
        job_id: marker_state(job_id, record.launch_id, markers)
        or JobState(record.final_states.get(job_id, JobState.LOST))
        for job_id in job_ids
    }


@dataclass
class PodPoll:
    """One poll of a sweep's pods; `done_with` lists the pods it found finished, gone or superseded."""

    api: RunPodAPI
    ready_timeout_s: float
    done_with: list[Termination] = field(default_factory=list)

    def states(self, sweep: SweepDir, manifest: Manifest, markers_of: Callable[[], set[str]]) -> dict[str, JobState]:
        """Jobs of a pod that is gone (exited, terminated by itself, or lost) and have no marker are `lost`."""
        ledger = PodLedger(sweep)
        owners = jobs_of_workers(manifest)
        # The manifest on disk, not auto_pull's copy: a launch running elsewhere writes it before its pods exist.
        on_disk = sweep.read_manifest_if_any()
        current = jobs_of_workers(on_disk) if on_disk else owners
        for record in [r for r in ledger.pods.values() if r.live and r.host]:
            if (record.launch_id, record.worker_id) not in current:
                self.done_with.append(Termination(record.pod_id, "its jobs were relaunched elsewhere", {}))
        superseded = {done.pod_id for done in self.done_with}
        probes = {
            key: self.probe(record, sweep.name)
            for key in owners
            if (record := ledger.running(*key)) is not None and record.live and record.pod_id not in superseded
        }
        # The markers after the pods' processes: a clip that finishes in between is never taken for
        # one whose worker died without finishing it.
        markers = markers_of()
        states: dict[str, JobState] = {}
        for (launch_id, worker), job_ids in owners.items():
            record = ledger.running(launch_id, worker)
            if (launch_id, worker) in probes:
                states |= self.pod_states(record, job_ids, markers, probes[(launch_id, worker)])
            elif record is None:
                # A pod still being provisioned (created, not ready, within its deadline): its jobs wait.
                waiting = ledger.provisioning(launch_id, worker, self.ready_timeout_s)
                states |= marker_states(job_ids, markers, JobState.PENDING if waiting else JobState.FAILED, launch_id)
            else:
                states |= gone_pod_states(record, job_ids, markers)
        return states

    def probe(self, record: PodRecord, sweep: str) -> HostProbe | None:
        """The pod's processes, in one round trip; None when it is gone (noted) or silent."""
        pod = self.api.get_pod(record.pod_id)
        if pod is None or pod.gone:
            self.done_with.append(Termination(record.pod_id, "gone" if pod is None else pod.desired_status.lower(), {}))
            return None
        try:
            return probe_host(record.ssh_host(), sweep)
        except HostUnreachable:
            return None

    def pod_states(
        self, record: PodRecord, job_ids: list[str], markers: set[str], probe: HostProbe | None
    ) -> dict[str, JobState]:
        if probe is None:
            return marker_states(job_ids, markers, JobState.LOST, record.launch_id)
        probe.markers = markers
        states = classify(dict.fromkeys(job_ids, record.worker_id), probe, dict.fromkeys(job_ids, record.launch_id))
        if all(state in FINISHED_STATES for state in states.values()):
            self.done_with.append(Termination(record.pod_id, "all its jobs finished", dict(states)))
        return states
