"""EC2 spot backend: one self-terminating spot instance per shard, in the cheapest zone that has capacity.

Before launch (dry runs too) it shows the current spot price of every configured type in every
zone, the sweep's live workers, and the estimated run time and cost, and it refuses a second fleet
for clips that live workers already run, or an estimate above `max_total_usd`. Each instance runs
the common worker script as user data (see `musicsweep.backends.ec2.userdata`) and shuts itself down.

The backend never connects to an instance: job states come from the store's markers plus the
instance states of the EC2 API, so the made-up addresses of a local EC2 stand-in are never used.
`user_data(instance_id)` returns what an instance was given, which is the seam tests use to run
an instance's script locally in a sandbox.

Modules: `config` (musicsweep.yaml), `pricing` (spot quotes and launch options), `launch` (one
instance, with fallbacks), `userdata` (its script), `instances` (what the API describes), `state`
(what the manifest keeps), `billing` (estimate figures and paid time); this module runs the lifecycle.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
from functools import cached_property
from importlib.metadata import version

import boto3

from musicsweep.backends.base import Backend, Launch, Shard, balanced_shards
from musicsweep.backends.ec2.billing import EC2Billing
from musicsweep.backends.ec2.config import EC2Config, load_ec2_config
from musicsweep.backends.ec2.instances import (
    check_no_second_fleet,
    describe_workers,
    ec2_call,
    instance_executor,
    newest_by_worker,
)
from musicsweep.backends.ec2.launch import LIVE_STATES, Blocked, launch_instance, run_request, worker_tags
from musicsweep.backends.ec2.pricing import LaunchOption, current_spot_prices, hourly_rate, launch_options, price_table
from musicsweep.backends.ec2.state import EC2Instances, StartedInstance
from musicsweep.backends.ec2.userdata import InstanceWork, render_user_data
from musicsweep.billing import WorkerKey
from musicsweep.contract import LaunchEnv, store_config_to_env, sweep_environment
from musicsweep.costs.estimate import estimate_for
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.layout import SweepDir, list_markers
from musicsweep.manifest import Manifest
from musicsweep.remote.packaging import StoredWheel, upload_wheel, wheel_key
from musicsweep.scripts import write_script
from musicsweep.states import JobState, job_states
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.pull import pull_results
from musicsweep.store.shards import put_specs

logger = logging.getLogger(__name__)

PLACEHOLDER_LAUNCH_ID = "00000000T000000-000000"  # same length as a real launch id, for the size check


class EC2Backend(Backend):
    name = "ec2"
    pending_is_seen = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self.settings: EC2Config = load_ec2_config(config)
        self.options: list[LaunchOption] | None = None
        self.billing: EC2Billing = EC2Billing(self.settings, lambda: self.client, lambda: self.store)

    @cached_property
    def client(self):
        return boto3.client("ec2", region_name=self.settings.region, endpoint_url=self.settings.endpoint_url)

    @cached_property
    def store(self) -> Store:
        return open_store(self.config.store)

    def _where(self, key: str) -> str:
        return self.config.where(f"backends.ec2.{key}")

    def validate(self, dry_run: bool = False) -> None:
        """The instance types must exist in the region (one describe call)."""
        types = list(self.settings.instance_types)
        try:
            ec2_call("describe_instance_types", self.client.describe_instance_types, InstanceTypes=types)
        except MusicsweepError as error:
            if "InvalidInstanceType" in str(error):
                raise MusicsweepError(f"{self._where('instance_types')}: {error}") from None
            raise

    def instances(self, sweep: str | None = None, states: tuple[str, ...] = ()) -> list[dict]:
        """musicsweep worker instances, of one sweep or of all, optionally only in `states`."""
        return describe_workers(self.client, sweep, states)

    # --- before launch -------------------------------------------------------------------------

    def _check_user_data(self, shards: list[Shard]) -> None:
        """Render every shard's script with placeholders of the real lengths: over 16 KB fails here."""
        digest = "0" * 64
        placeholder = StoredWheel(wheel_key(digest, f"musicsweep-{version('musicsweep')}-py3-none-any.whl"), digest)
        env = sweep_environment(self.config, PLACEHOLDER_LAUNCH_ID, False, digest) | self._store_env()
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
        quotes = ec2_call(
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
        notes = price_table(quotes) + check_no_second_fleet(self.instances(states=LIVE_STATES), self.store, jobs)
        if settings.instances is not None:
            count = settings.instances
        elif settings.clips_per_instance is not None:
            count = math.ceil(len(jobs) / settings.clips_per_instance)
        else:
            count = 1
        first = options[0]
        shards = balanced_shards(jobs, [(f"{first.instance_type}@{first.zone}", hourly_rate(settings, first))] * count)
        self._check_user_data(shards)
        estimate = estimate_for(self.config, self.name, self.billing, shards, self.store)
        cost = estimate.paid_usd
        boot = max(worker.parts["boot"] for worker in estimate.workers)
        notes.append(
            f"plan: {len(shards)} instance(s), {max(len(s.jobs) for s in shards)} clip(s) per instance, "
            f"first choice {first.describe()}; about {estimate.shard_wall_s / 60:.1f} min each (with "
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
        # Fallbacks that would take the fleet's calibrated instance seconds over the limit are never tried.
        fleet_usd = {o: estimate.machine_s * hourly_rate(settings, o) / 3600.0 for o in options}
        self.options = [o for o in options if fleet_usd[o] <= settings.max_total_usd]
        return shards

    # --- launch ----------------------------------------------------------------------------------

    def _store_env(self) -> dict[str, str]:
        """Store settings for the instance: never the launcher's AWS profile (instances use their role)."""
        return store_config_to_env(dataclasses.replace(self.config.store, profile=None))

    def submit(self, launch: Launch, shards: list[Shard]) -> EC2Instances:
        """Upload wheel and specs, then start one instance per shard (all or none)."""
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
        jobs = [job for shard in shards for job in shard.jobs]
        put_specs(self.store, sweep, jobs, LaunchEnv.from_env(launch.env).specs_sha256)
        blocked = Blocked()
        started: dict[str, StartedInstance] = {}
        try:
            for work in works:
                tags = worker_tags(self.settings, sweep.name, launch.launch_id, work.worker_id)

                def request(option: LaunchOption, work: InstanceWork = work, tags: list = tags) -> dict:
                    return run_request(self.settings, option, self._user_data(work, option, env), tags)

                instance, option = launch_instance(self.client, self.options, blocked, request)
                write_script(sweep.worker(work.worker_id).script, self._user_data(work, option, env))  # to inspect
                started[instance["InstanceId"]] = StartedInstance(
                    launch.launch_id,
                    work.worker_id,
                    option.instance_type,
                    option.zone,
                    option.market,
                    hourly_rate(self.settings, option),
                )
                logger.info(
                    f"ec2: started {instance['InstanceId']} ({option.describe()}) for worker {work.worker_id} "
                    f"({len(work.jobs)} clip(s))"
                )
        except BaseException:
            if started:
                logger.info(f"ec2: launch failed; terminating the {len(started)} instance(s) it started")
                self.client.terminate_instances(InstanceIds=list(started))
            raise
        previous = sweep.read_manifest().state_of(EC2Instances)
        return EC2Instances(previous.started | started)

    def _user_data(self, work: InstanceWork, option: LaunchOption, env: dict[str, str]) -> str:
        """The script for `work` on `option`: its hourly rate is the option's."""
        priced = dataclasses.replace(work, hourly_usd=hourly_rate(self.settings, option))
        return render_user_data(self.settings, priced, env, self._where("instances"))

    def user_data(self, instance_id: str) -> str:
        """The script an instance was given (what it runs at boot)."""
        attribute = ec2_call(
            "describe_instance_attribute",
            self.client.describe_instance_attribute,
            InstanceId=instance_id,
            Attribute="userData",
        )
        return base64.b64decode(attribute["UserData"]["Value"]).decode()

    # --- auto_pull ------------------------------------------------------------------------------

    def poll(self, sweep: SweepDir, manifest: Manifest) -> dict[str, JobState]:
        """Markers first decide; then the instance: pending/running, or gone without `.done` = failed.

        Instances are described before markers are listed, so a clip finished in between is never
        taken for one whose instance died without finishing it. An instance still up after every
        clip of its shard is finished makes those clips `done_orphans`, so auto_pull terminates it.
        """
        instances = newest_by_worker(self.client, sweep.name)
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
            ec2_call("terminate_instances", self.client.terminate_instances, InstanceIds=instance_ids)

    def kill_orphans(self, sweep: SweepDir, manifest: Manifest, job_ids: list[str]) -> None:
        """Terminate the live instances whose every clip is finished."""
        keys = {(manifest.jobs[j].launch or "", int(manifest.jobs[j].worker)) for j in job_ids}
        live = [
            i
            for key, i in newest_by_worker(self.client, sweep.name).items()
            if key in keys and i["State"]["Name"] in LIVE_STATES
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
