"""The sweep's instances as the EC2 API describes them: who they work for, and their state.

`ec2_call` turns any EC2 API error into one line; every call the backend makes goes through it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from musicsweep.backends.ec2.launch import LAUNCH_TAG, LIVE_STATES, SWEEP_TAG, WORKER_TAG
from musicsweep.billing import WorkerKey
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import StoreKeys, list_markers, marker_job_id
from musicsweep.states import Executor, JobState
from musicsweep.store.base import Store

_TERMINATED_AT = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")


def ec2_call(what: str, method: Callable[..., Any], **request: Any) -> Any:
    """One EC2 API call; its errors become one line."""
    try:
        return method(**request)
    except NoCredentialsError:
        raise MusicsweepError(f"ec2 {what}: no AWS credentials (environment, profile or instance role)") from None
    except ClientError as error:
        detail = error.response.get("Error", {})
        raise MusicsweepError(f"ec2 {what}: {detail.get('Code')}: {detail.get('Message')}") from None
    except BotoCoreError as error:
        raise MusicsweepError(f"ec2 {what}: {error}") from None


def tag(instance: dict, key: str) -> str | None:
    return next((tag["Value"] for tag in instance.get("Tags", []) if tag["Key"] == key), None)


def worker_key(instance: dict) -> WorkerKey:
    return (tag(instance, LAUNCH_TAG) or "", int(tag(instance, WORKER_TAG) or -1))


def instance_executor(instance: dict | None) -> Executor:
    """An instance as describe saw it: none found makes its jobs lost, a stopped or gone one failed."""
    if instance is None:
        return Executor(JobState.LOST, False)
    state = instance["State"]["Name"]
    return Executor(
        JobState.PENDING if state == "pending" else JobState.RUNNING if state == "running" else JobState.FAILED,
        state in LIVE_STATES,
    )


def describe_workers(client: Any, sweep: str | None = None, states: tuple[str, ...] = ()) -> list[dict]:
    """musicsweep worker instances, of one sweep or of all, optionally only in `states`."""
    filters = [{"Name": "tag-key", "Values": [WORKER_TAG]}]
    if sweep is not None:
        filters.append({"Name": f"tag:{SWEEP_TAG}", "Values": [sweep]})
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    found = []
    for page in client.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            found.extend(reservation["Instances"])
    return found


def newest_by_worker(client: Any, sweep: str) -> dict[WorkerKey, dict]:
    """The newest instance of each (launch id, worker id) of the sweep, in any state."""
    found: dict[WorkerKey, dict] = {}
    for instance in describe_workers(client, sweep):
        key = worker_key(instance)
        if key not in found or instance["LaunchTime"] > found[key]["LaunchTime"]:
            found[key] = instance
    return found


def ended_at(instance: dict, store: Store, sweep: str) -> datetime:
    """When the instance stopped costing: EC2's termination time, else the script's own record, else now."""
    match = _TERMINATED_AT.search(instance.get("StateTransitionReason") or "")
    if instance["State"]["Name"] in ("terminated", "shutting-down") and match:
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    record = StoreKeys(sweep).instance_end(*worker_key(instance))
    if instance["State"]["Name"] not in LIVE_STATES and store.exists(record):
        return datetime.fromtimestamp(store.get_json(record)["end"], UTC)
    return datetime.now(UTC)


def check_no_second_fleet(live: list[dict], store: Store, jobs: list[Job]) -> list[str]:
    """Refuse clips that `live` workers of this sweep already run; report every live worker."""
    sweep = jobs[0].sweep
    ours = [i for i in live if tag(i, SWEEP_TAG) == sweep]
    wanted = {job.job_id for job in jobs}
    done = {marker_job_id(name) for name in list_markers(store, sweep)} - {None}
    for instance in ours:
        launch_id, worker_id = worker_key(instance)
        if store.exists(StoreKeys(sweep).instance_end(launch_id, worker_id)):
            continue  # its script has finished and marked what it left: it is only shutting down
        listed = StoreKeys(sweep).shard(launch_id, worker_id)
        # No shard list: assume the worst, that it runs these clips.
        running = set(store.get_json(listed)["jobs"]) - done if store.exists(listed) else wanted
        if running & wanted:
            raise MusicsweepError(
                f"ec2: instance {instance['InstanceId']} ({instance['State']['Name']}) already runs "
                f"{len(running & wanted)} of these clips of sweep {sweep!r}: not starting a second fleet "
                f"(wait for it, or terminate it with auto_pull --cleanup)"
            )
    notes = [f"live musicsweep workers: {len(ours)} of this sweep, {len(live) - len(ours)} of other sweeps"]
    return notes + [f"  {i['InstanceId']} {i['InstanceType']} {tag(i, SWEEP_TAG)}" for i in live]
