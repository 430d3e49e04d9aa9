"""EC2 spot backend: one self-terminating spot instance per shard, in the cheapest zone that has capacity.

Before launch (dry runs too) it shows the current spot price of every configured type in every
zone, the sweep's live workers, and the estimated run time and cost, and it refuses a second fleet
for clips that live workers already run, or an estimate above `max_total_usd`. Each instance runs
the common worker script as user data (see `musicsweep.backends.ec2.userdata`) and shuts itself down.

The backend never connects to an instance: job states come from the store's markers plus the
instance states of the EC2 API, so the made-up addresses of a local EC2 stand-in are never used.
`user_data(instance_id)` returns what an instance was given, which is the seam tests use to run
an instance's script locally in a sandbox.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import re
from datetime import UTC, datetime
from functools import cached_property
from importlib.metadata import version

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from musicsweep.backends.base import Backend, BackendFigures, Launch, Shard, balanced_shards
from musicsweep.backends.ec2.config import EC2Config, load_ec2_config
from musicsweep.backends.ec2.launch import (
    LAUNCH_TAG,
    LIVE_STATES,
    SWEEP_TAG,
    WORKER_TAG,
    Blocked,
    launch_instance,
    run_request,
    worker_tags,
)
from musicsweep.backends.ec2.pricing import (
    MIN_BILLED_S,
    LaunchOption,
    current_spot_prices,
    launch_options,
    lifetime_spot_cost,
    price_table,
)
from musicsweep.backends.ec2.userdata import InstanceWork, render_user_data
from musicsweep.contract import sweep_environment
from musicsweep.costs.estimate import Estimate, estimate_for
from musicsweep.costs.summary import MachineTime, WorkerKey
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import StoreKeys, SweepDir, list_markers, marker_job_id
from musicsweep.manifest import Manifest
from musicsweep.remote.packaging import upload_wheel, wheel_key
from musicsweep.scripts import write_script
from musicsweep.states import Executor, JobState, job_states
from musicsweep.store import open_store, store_config_to_env
from musicsweep.store.base import Store
from musicsweep.store.pull import pull_results

logger = logging.getLogger(__name__)

PLACEHOLDER_LAUNCH_ID = "00000000T000000-000000"  # same length as a real launch id, for the size check
_TERMINATED_AT = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")


def _tag(instance: dict, key: str) -> str | None:
    return next((tag["Value"] for tag in instance.get("Tags", []) if tag["Key"] == key), None)


def _worker_key(instance: dict) -> WorkerKey:
    return (_tag(instance, LAUNCH_TAG) or "", int(_tag(instance, WORKER_TAG) or -1))


def instance_executor(instance: dict | None) -> Executor:
    """An instance as describe saw it: none found makes its jobs lost, a stopped or gone one failed."""
    if instance is None:
        return Executor(JobState.LOST, False)
    state = instance["State"]["Name"]
    return Executor(
        JobState.PENDING if state == "pending" else JobState.RUNNING if state == "running" else JobState.FAILED,
        state in LIVE_STATES,
    )


class EC2Backend(Backend):
    name = "ec2"
    spends_money = True
    boots_machines = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self.settings: EC2Config = load_ec2_config(config)
        self.options: list[LaunchOption] | None = None

    @cached_property
    def client(self):
        return boto3.client("ec2", region_name=self.settings.region, endpoint_url=self.settings.endpoint_url)

    @cached_property
    def store(self) -> Store:
        return open_store(self.config.store)

    def _where(self, key: str) -> str:
        return self.config.where(f"backends.ec2.{key}")

    def _call(self, what: str, method, **request) -> dict:
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

    def validate(self, dry_run: bool = False) -> None:
        """The instance types must exist in the region (one describe call)."""
        types = list(self.settings.instance_types)
        try:
            self._call("describe_instance_types", self.client.describe_instance_types, InstanceTypes=types)
        except MusicsweepError as error:
            if "InvalidInstanceType" in str(error):
                raise MusicsweepError(f"{self._where('instance_types')}: {error}") from None
            raise

    # --- before launch -------------------------------------------------------------------------

    def instances(self, sweep: str | None = None, states: tuple[str, ...] = ()) -> list[dict]:
        """musicsweep worker instances, of one sweep or of all, optionally only in `states`."""
        filters = [{"Name": "tag-key", "Values": [WORKER_TAG]}]
        if sweep is not None:
            filters.append({"Name": f"tag:{SWEEP_TAG}", "Values": [sweep]})
        if states:
            filters.append({"Name": "instance-state-name", "Values": list(states)})
        found = []
        for page in self.client.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
        return found

    def _check_fleet(self, jobs: list[Job]) -> list[str]:
        """Refuse clips that live workers of this sweep already run; report every live worker."""
        sweep = jobs[0].sweep
        live = self.instances(states=LIVE_STATES)
        ours = [i for i in live if _tag(i, SWEEP_TAG) == sweep]
        wanted = {job.job_id for job in jobs}
        done = {marker_job_id(name) for name in list_markers(self.store, sweep)} - {None}
        for instance in ours:
            launch_id, worker_id = _worker_key(instance)
            if self.store.exists(StoreKeys(sweep).instance_end(launch_id, worker_id)):
                continue  # its script has finished and marked what it left: it is only shutting down
            listed = StoreKeys(sweep).shard(launch_id, worker_id)
            # No shard list: assume the worst, that it runs these clips.
            running = set(self.store.get_json(listed)["jobs"]) - done if self.store.exists(listed) else wanted
            if running & wanted:
                raise MusicsweepError(
                    f"ec2: instance {instance['InstanceId']} ({instance['State']['Name']}) already runs "
                    f"{len(running & wanted)} of these clips of sweep {sweep!r}: not starting a second fleet "
                    f"(wait for it, or terminate it with auto_pull --cleanup)"
                )
        notes = [f"live musicsweep workers: {len(ours)} of this sweep, {len(live) - len(ours)} of other sweeps"]
        return notes + [f"  {i['InstanceId']} {i['InstanceType']} {_tag(i, SWEEP_TAG)}" for i in live]

    def machine_kind(self, shard: Shard) -> str:
        return shard.host.split("@", 1)[0]  # `g5.xlarge@us-east-1a` calibrates as g5.xlarge

    def estimate_figures(self) -> BackendFigures:
        throughput, startup = self.settings.throughput, self.settings.startup_minutes
        return BackendFigures(
            throughput=None if throughput is None else (throughput, "backends.ec2.throughput"),
            boot=None if startup is None else (startup * 60, "backends.ec2.startup_minutes"),
        )

    @staticmethod
    def _fleet_cost(estimate: Estimate, hourly_usd: float) -> float:
        """The calibrated instance seconds of the fleet at another option's rate."""
        return estimate.machine_s * hourly_usd / 3600.0

    def _check_user_data(self, shards: list[Shard]) -> None:
        """Render every shard's script with placeholders of the real lengths: over 16 KB fails here."""
        placeholder = wheel_key("0" * 64, f"musicsweep-{version('musicsweep')}-py3-none-any.whl")
        env = sweep_environment(self.config, PLACEHOLDER_LAUNCH_ID, is_restart=False) | self._store_env()
        for shard in shards:
            work = InstanceWork(
                shard.jobs[0].sweep,
                PLACEHOLDER_LAUNCH_ID,
                shard.worker_id,
                len(shards),
                shard.jobs,
                shard.hourly_cost_usd,
                placeholder,
            )
            render_user_data(self.settings, work, env, self._where("instances"))

    def shard(self, jobs: list[Job]) -> list[Shard]:
        """Prices, live workers, fleet size and estimate; refuses what must not start."""
        settings = self.settings
        quotes = self._call(
            "describe_spot_price_history",
            current_spot_prices,
            client=self.client,
            instance_types=list(settings.instance_types),
        )
        options = launch_options(quotes, settings)
        if not options:
            raise MusicsweepError(
                f"{self._where('instance_types')}: no spot price at or below max_price for "
                f"{', '.join(settings.instance_types)} in {settings.region}"
            )
        notes = price_table(quotes) + self._check_fleet(jobs)
        if settings.instances is not None:
            count = settings.instances
        elif settings.clips_per_instance is not None:
            count = math.ceil(len(jobs) / settings.clips_per_instance)
        else:
            count = 1
        first = options[0]
        rate = settings.hourly_cost_usd if settings.hourly_cost_usd is not None else first.hourly_usd
        shards = balanced_shards(jobs, [(f"{first.instance_type}@{first.zone}", rate)] * count)
        self._check_user_data(shards)
        estimate = estimate_for(self, shards, self.store)
        cost = estimate.paid_usd
        boot = max(worker.parts["boot"] for worker in estimate.workers)
        notes.append(
            f"plan: {len(shards)} instance(s), {max(len(s.jobs) for s in shards)} clip(s) per instance, "
            f"first choice {first.describe()}; about {estimate.wall_s / 60:.1f} min each (with "
            f"{boot / 60:.1f} min boot, {estimate.sources.get('boot', '')}), ${cost:.2f} in all "
            f"(limit ${settings.max_total_usd:.2f})"
        )
        for line in notes:
            logger.info(f"ec2 {line}")
        if cost > settings.max_total_usd:
            raise MusicsweepError(
                f"{self._where('max_total_usd')}: estimated cost ${cost:.2f} is above the limit "
                f"${settings.max_total_usd:.2f}: nothing was started"
            )
        # Fallbacks that would take the fleet over the limit are never tried.
        self.options = [o for o in options if self._fleet_cost(estimate, self._rate(o)) <= settings.max_total_usd]
        return shards

    # --- launch ----------------------------------------------------------------------------------

    def _store_env(self) -> dict[str, str]:
        """Store settings for the instance: never the launcher's AWS profile (instances use their role)."""
        return store_config_to_env(dataclasses.replace(self.config.store, profile=None))

    def submit(self, launch: Launch, shards: list[Shard]) -> dict:
        """Upload wheel, specs and shard lists, then start one instance per shard (all or none)."""
        if self.options is None:
            self.shard([job for shard in shards for job in shard.jobs])
        sweep = launch.sweep
        env = launch.env | self._store_env()
        wheel = upload_wheel(self.store)
        works = [
            InstanceWork(sweep.name, launch.launch_id, s.worker_id, len(shards), s.jobs, s.hourly_cost_usd, wheel)
            for s in shards
        ]
        for work in works:  # the size check again, with the real values, before any instance starts
            render_user_data(self.settings, work, env, self._where("instances"))
        for shard in shards:
            for job in shard.jobs:
                self.store.put_file(sweep.keys.spec(job.job_id), sweep.job(job).spec)
            jobs = [job.job_id for job in shard.jobs]
            self.store.put_json(sweep.keys.shard(launch.launch_id, shard.worker_id), {"jobs": jobs})
        blocked = Blocked()
        started: dict[str, dict] = {}
        try:
            for work in works:
                tags = worker_tags(self.settings, sweep.name, launch.launch_id, work.worker_id)

                def request(option: LaunchOption, work: InstanceWork = work, tags: list = tags) -> dict:
                    return run_request(self.settings, option, self._user_data(work, option, env), tags)

                instance, option = launch_instance(self.client, self.options, blocked, request)
                write_script(sweep.worker(work.worker_id).script, self._user_data(work, option, env))  # to inspect
                started[instance["InstanceId"]] = {
                    "launch": launch.launch_id,
                    "worker": work.worker_id,
                    "instance_type": option.instance_type,
                    "zone": option.zone,
                    "market": option.market,
                    "hourly_usd": self._rate(option),
                }
                logger.info(
                    f"ec2: started {instance['InstanceId']} ({option.describe()}) for worker {work.worker_id} "
                    f"({len(work.jobs)} clip(s))"
                )
        except BaseException:
            if started:
                logger.info(f"ec2: launch failed; terminating the {len(started)} instance(s) it started")
                self.client.terminate_instances(InstanceIds=list(started))
            raise
        previous = sweep.read_manifest().state_of("ec2_instances")
        return {"ec2_instances": previous | started}

    def _user_data(self, work: InstanceWork, option: LaunchOption, env: dict[str, str]) -> str:
        """The script for `work` on `option`: its hourly rate is the option's."""
        priced = dataclasses.replace(work, hourly_usd=self._rate(option))
        return render_user_data(self.settings, priced, env, self._where("instances"))

    def _rate(self, option: LaunchOption) -> float:
        return self.settings.hourly_cost_usd if self.settings.hourly_cost_usd is not None else option.hourly_usd

    def user_data(self, instance_id: str) -> str:
        """The script an instance was given (what it runs at boot)."""
        attribute = self._call(
            "describe_instance_attribute",
            self.client.describe_instance_attribute,
            InstanceId=instance_id,
            Attribute="userData",
        )
        return base64.b64decode(attribute["UserData"]["Value"]).decode()

    # --- auto_pull ------------------------------------------------------------------------------

    def _by_worker(self, sweep: str) -> dict[WorkerKey, dict]:
        """The newest instance of each (launch id, worker id) of the sweep, in any state."""
        found: dict[WorkerKey, dict] = {}
        for instance in self.instances(sweep):
            key = _worker_key(instance)
            if key not in found or instance["LaunchTime"] > found[key]["LaunchTime"]:
                found[key] = instance
        return found

    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        """Markers first decide; then the instance: pending/running, or gone without `.done` = failed.

        Instances are described before markers are listed, so a clip finished in between is never
        taken for one whose instance died without finishing it. An instance still up after every
        clip of its shard is finished makes those clips `done_orphans`, so auto_pull terminates it.
        """
        instances = self._by_worker(sweep.name)
        markers = list_markers(self.store, sweep.name)
        shards: dict[WorkerKey, list[str]] = {}
        for job_id, entry in manifest.jobs.items():
            if entry.assigned:
                shards.setdefault((entry.launch or "", int(entry.worker)), []).append(job_id)
        executors = {key: instance_executor(instances.get(key)) for key in shards}
        executor_of = {job_id: key for key, ids in shards.items() for job_id in ids}
        return job_states(executor_of, executors, markers, manifest.launch_of())

    def _terminate(self, instance_ids: list[str]) -> None:
        if instance_ids:
            self._call("terminate_instances", self.client.terminate_instances, InstanceIds=instance_ids)

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        """Terminate the live instances whose every clip is finished."""
        keys = {(manifest.jobs[j].launch or "", int(manifest.jobs[j].worker)) for j in job_ids}
        live = [
            i for key, i in self._by_worker(sweep.name).items() if key in keys and i["State"]["Name"] in LIVE_STATES
        ]
        self._terminate([i["InstanceId"] for i in live])

    def fetch(self, sweep: SweepDir, manifest: Manifest) -> None:
        pull_results(self.store, sweep)

    def cancel(self, sweep: SweepDir, manifest: Manifest) -> None:
        self._terminate(
            [i["InstanceId"] for i in self.instances(sweep.name, ("pending", "running", "stopping", "stopped"))]
        )

    def cleanup(self, sweep: SweepDir, manifest: Manifest) -> None:
        """Check that every instance of the sweep is terminated; terminate any that is not."""
        everything = self.instances(sweep.name)
        left = [i for i in everything if i["State"]["Name"] not in ("terminated", "shutting-down")]
        if left:
            ids = [i["InstanceId"] for i in left]
            logger.info(f"ec2: terminating {len(left)} instance(s) still up: {', '.join(ids)}")
            self._terminate(ids)
        else:
            logger.info(f"ec2: all {len(everything)} instance(s) of sweep {sweep.name} are terminated or ending")

    def _ended(self, sweep: SweepDir, instance: dict) -> datetime:
        """When the instance stopped costing: EC2's termination time, else the script's own record, else now."""
        match = _TERMINATED_AT.search(instance.get("StateTransitionReason") or "")
        if instance["State"]["Name"] in ("terminated", "shutting-down") and match:
            return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        record = sweep.keys.instance_end(*_worker_key(instance))
        if instance["State"]["Name"] not in LIVE_STATES and self.store.exists(record):
            return datetime.fromtimestamp(self.store.get_json(record)["end"], UTC)
        return datetime.now(UTC)

    def worker_machines(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, str]:
        started = manifest.state_of("ec2_instances").values()
        return {(entry["launch"], int(entry["worker"])): entry["instance_type"] for entry in started}

    def machine_times(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, MachineTime]:
        """Each instance's paid span, launch to termination, at its real spot price history (or on-demand rate)."""
        known = manifest.state_of("ec2_instances")
        times: dict[WorkerKey, MachineTime] = {}
        for key, instance in self._by_worker(sweep.name).items():
            start = instance["LaunchTime"].astimezone(UTC)
            end = max(self._ended(sweep, instance), start)
            seconds = max((end - start).total_seconds(), 1.0)
            if instance.get("InstanceLifecycle") == "spot":
                zone = instance["Placement"]["AvailabilityZone"]
                cost = self._call(
                    "describe_spot_price_history",
                    lifetime_spot_cost,
                    client=self.client,
                    instance_type=instance["InstanceType"],
                    zone=zone,
                    start=start,
                    end=end,
                )
            else:
                hourly = float(known.get(instance["InstanceId"], {}).get("hourly_usd", 0.0))
                cost = max(seconds, MIN_BILLED_S) * hourly / 3600.0
            times[key] = MachineTime(start.timestamp(), start.timestamp() + seconds, cost * 3600.0 / seconds)
        return times
