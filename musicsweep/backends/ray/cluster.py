"""The Ray cluster as the launcher reaches it: the Jobs API and the state API, both HTTP on the
dashboard's address (`backends.ray.address`). Ray's SDK is imported here, inside the methods."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from musicsweep.errors import MusicsweepError

STATE_TIMEOUT_S = 30  # the state API's own default: a loaded head answers slowly, not never
TERMINAL_JOB_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


class ClusterUnreachable(MusicsweepError):
    """The address does not answer (or answers something that is not Ray's dashboard)."""


@dataclass
class ClusterView:
    """One look at a sweep's Ray objects: its actors by name, and the status of jobs asked about."""

    actors: dict[str, str] = field(default_factory=dict)  # actor name -> ALIVE, PENDING_CREATION, ..., DEAD
    jobs: dict[str, str] = field(default_factory=dict)  # submission id -> PENDING, RUNNING, SUCCEEDED, ...


class RayCluster:
    def __init__(self, address: str, where: str) -> None:
        self.address = address.rstrip("/")
        self.where = where

    def unreachable(self, error: BaseException) -> ClusterUnreachable:
        why = " ".join(str(error).split())[:200] or type(error).__name__
        return ClusterUnreachable(f"{self.where}: the Ray cluster at {self.address} does not answer: {why}")

    def ray_version(self) -> str:
        """The cluster's Ray version, from the dashboard's `/api/version` (no SDK needed)."""
        try:
            with urllib.request.urlopen(f"{self.address}/api/version", timeout=STATE_TIMEOUT_S) as response:
                return json.loads(response.read())["ray_version"]
        except (OSError, ValueError, KeyError) as error:
            raise self.unreachable(error) from None

    @cached_property
    def client(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        for name in ("ray", "ray.dashboard.modules.dashboard_sdk"):  # its INFO lines (uploads) are not ours
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            return JobSubmissionClient(self.address)
        except (ConnectionError, RuntimeError, OSError) as error:
            raise self.unreachable(error) from None

    def submit(self, submission_id: str, entrypoint: str, runtime_env: dict, metadata: dict[str, str]) -> None:
        try:
            self.client.submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=runtime_env,
                metadata=metadata,
                entrypoint_num_cpus=0,  # the driver only waits: the workers hold the resources
            )
        except (ConnectionError, OSError) as error:
            raise self.unreachable(error) from None
        except RuntimeError as error:
            why = " ".join(str(error).split())
            raise MusicsweepError(f"{self.where}: the Jobs API refused the job: {why}") from None

    def job_status(self, submission_id: str) -> str | None:
        """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED; None for a job the cluster does not know."""
        try:
            return str(self.client.get_job_status(submission_id).value)
        except RuntimeError as error:
            if "does not exist" in str(error):
                return None
            raise self.unreachable(error) from None
        except (ConnectionError, OSError) as error:
            raise self.unreachable(error) from None

    def stop_job(self, submission_id: str) -> None:
        try:
            self.client.stop_job(submission_id)
        except RuntimeError as error:
            if "does not exist" not in str(error):
                raise self.unreachable(error) from None
        except (ConnectionError, OSError) as error:
            raise self.unreachable(error) from None

    def actors(self, namespace: str) -> dict[str, str]:
        """Every actor of `namespace` by name, with its state: one state API call. When a name was
        used twice (a relaunch), the live one wins."""
        from ray.util.state import list_actors
        from ray.util.state.exception import RayStateApiException

        try:
            listed = list_actors(
                address=self.address,
                filters=[("ray_namespace", "=", namespace)],
                limit=10_000,
                timeout=STATE_TIMEOUT_S,
                raise_on_missing_output=False,
            )
        except (RayStateApiException, ConnectionError, OSError) as error:
            raise self.unreachable(error) from None
        states: dict[str, str] = {}
        for actor in sorted(listed, key=lambda actor: actor.state != "DEAD"):
            if actor.name:
                states[actor.name] = actor.state
        return states

    def node_resources(self) -> list[dict[str, float]]:
        """Each live node's total resources."""
        from ray.util.state import list_nodes
        from ray.util.state.exception import RayStateApiException

        try:
            nodes = list_nodes(address=self.address, detail=True, timeout=STATE_TIMEOUT_S)
        except (RayStateApiException, ConnectionError, OSError) as error:
            raise self.unreachable(error) from None
        return [dict(node.resources_total) for node in nodes if node.state == "ALIVE"]
