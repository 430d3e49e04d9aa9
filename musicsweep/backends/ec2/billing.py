"""What EC2 instances cost: their own launch-to-termination span at the zone's spot price history
(or the on-demand rate they were started at); before launch, the settings' own figures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

from musicsweep.backends.ec2.config import EC2Config
from musicsweep.backends.ec2.instances import ec2_call, ended_at, newest_by_worker
from musicsweep.backends.ec2.pricing import MIN_BILLED_S, lifetime_spot_cost
from musicsweep.backends.ec2.state import EC2Instances
from musicsweep.billing import EstimateFigures, MachineTime, WorkerKey
from musicsweep.layout import SweepDir
from musicsweep.manifest import Manifest
from musicsweep.store.base import Store


class EC2Billing:
    spends_money = True
    boots_machines = True

    def __init__(self, settings: EC2Config, client: Callable[[], Any], store: Callable[[], Store]) -> None:
        self.settings = settings
        self.client = client
        self.store = store

    def machine_kind(self, host: str) -> str:
        return host.split("@", 1)[0]  # `g5.xlarge@us-east-1a` calibrates as g5.xlarge

    def estimate_figures(self) -> EstimateFigures:
        throughput, startup = self.settings.throughput, self.settings.startup_minutes
        return EstimateFigures(
            throughput=None if throughput is None else (throughput, "backends.ec2.throughput"),
            boot=None if startup is None else (startup * 60, "backends.ec2.startup_minutes"),
        )

    def worker_machines(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, str]:
        started = manifest.state_of(EC2Instances).started.values()
        return {entry.key: entry.instance_type for entry in started}

    def machine_times(self, sweep: SweepDir, manifest: Manifest) -> dict[WorkerKey, MachineTime]:
        """Each instance's paid span, launch to termination, at its real spot price history (or on-demand rate)."""
        known = manifest.state_of(EC2Instances).started
        times: dict[WorkerKey, MachineTime] = {}
        for key, instance in newest_by_worker(self.client(), sweep.name).items():
            start = instance["LaunchTime"].astimezone(UTC)
            end = max(ended_at(instance, self.store(), sweep.name), start)
            seconds = max((end - start).total_seconds(), 1.0)
            if instance.get("InstanceLifecycle") == "spot":
                cost = ec2_call(
                    "describe_spot_price_history",
                    lifetime_spot_cost,
                    client=self.client(),
                    instance_type=instance["InstanceType"],
                    zone=instance["Placement"]["AvailabilityZone"],
                    start=start,
                    end=end,
                )
            else:
                entry = known.get(instance["InstanceId"])
                cost = max(seconds, MIN_BILLED_S) * (entry.hourly_usd if entry else 0.0) / 3600.0
            times[key] = MachineTime(start.timestamp(), start.timestamp() + seconds, cost * 3600.0 / seconds)
        return times
