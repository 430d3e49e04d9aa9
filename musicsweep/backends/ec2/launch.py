"""Start one worker instance: the run_instances request, and the fallback over zones, types and markets.

Launch errors are classified by what they rule out: a zone (no capacity there, price too low),
every spot launch (spot quota), or an instance type (vCPU quota). Anything else is a real
error (bad AMI, permissions) and stops the launch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from musicsweep.backends.ec2.config import EC2Config
from musicsweep.backends.ec2.pricing import LaunchOption
from musicsweep.errors import MusicsweepError

WORKER_TAG = "musicsweep-worker"
SWEEP_TAG = "musicsweep-sweep"
LAUNCH_TAG = "musicsweep-launch"
LIVE_STATES = ("pending", "running")

ZONE_ERRORS = {
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientCapacity",
    "InsufficientFreeAddressesInSubnet",
    "SpotMaxPriceTooLow",
    "Unsupported",
}
SPOT_ERRORS = {"MaxSpotInstanceCountExceeded", "SpotInstanceCountExceeded"}
TYPE_ERRORS = {"VcpuLimitExceeded", "InstanceLimitExceeded"}


def classify_launch_error(code: str) -> str:
    """'zone', 'spot' or 'type' for what the error rules out; 'fatal' for a real error."""
    if code in ZONE_ERRORS:
        return "zone"
    if code in SPOT_ERRORS:
        return "spot"
    if code in TYPE_ERRORS:
        return "type"
    return "fatal"


@dataclass
class Blocked:
    """What earlier attempts ruled out, shared by every instance of one submit."""

    zones: set[tuple[str, str | None, str]] = field(default_factory=set)  # (type, zone, market)
    types: set[tuple[str, str]] = field(default_factory=set)  # (type, market)
    spot: bool = False
    attempts: list[str] = field(default_factory=list)

    def allows(self, option: LaunchOption) -> bool:
        if option.market == "spot" and self.spot:
            return False
        if (option.instance_type, option.market) in self.types:
            return False
        return (option.instance_type, option.zone, option.market) not in self.zones

    def record(self, option: LaunchOption, code: str, kind: str) -> None:
        self.attempts.append(f"{option.describe()}: {code}")
        if kind == "zone":
            self.zones.add((option.instance_type, option.zone, option.market))
        elif kind == "spot":
            self.spot = True
        elif kind == "type":
            self.types.add((option.instance_type, option.market))


def worker_tags(settings: EC2Config, sweep: str, launch_id: str, worker_id: int) -> list[dict[str, str]]:
    tags = dict(settings.tags) | {
        "Name": f"musicsweep-{sweep}-{worker_id}",
        WORKER_TAG: str(worker_id),
        SWEEP_TAG: sweep,
        LAUNCH_TAG: launch_id,
    }
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def run_request(settings: EC2Config, option: LaunchOption, user_data: str, tags: list[dict[str, str]]) -> dict:
    """The run_instances arguments for one instance of `option`."""
    profile = settings.instance_profile
    request = {
        "ImageId": settings.ami,
        "InstanceType": option.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": user_data,
        "IamInstanceProfile": {"Arn": profile} if profile.startswith("arn:") else {"Name": profile},
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [{"ResourceType": kind, "Tags": tags} for kind in ("instance", "volume")],
    }
    if option.market == "spot":
        spot = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
        if settings.max_price is not None:
            spot["MaxPrice"] = f"{settings.max_price:.5f}"
        request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
    if option.zone and option.zone in settings.subnets:
        request["SubnetId"] = settings.subnets[option.zone]
    elif option.zone:
        request["Placement"] = {"AvailabilityZone": option.zone}
    if settings.security_group_ids:
        request["SecurityGroupIds"] = list(settings.security_group_ids)
    if settings.key_name:
        request["KeyName"] = settings.key_name
    return request


def launch_instance(
    client, options: list[LaunchOption], blocked: Blocked, request_for: Callable[[LaunchOption], dict]
) -> tuple[dict, LaunchOption]:
    """Try `options` in order until one starts; `request_for(option)` builds its run_instances arguments.

    Returns the instance description and the option that worked; raises MusicsweepError when a
    real error occurs or every option is ruled out.
    """
    for option in options:
        if not blocked.allows(option):
            continue
        try:
            response = client.run_instances(**request_for(option))
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "Unknown"))
            kind = classify_launch_error(code)
            if kind == "fatal":
                message = error.response.get("Error", {}).get("Message", "")
                raise MusicsweepError(f"ec2 launch of {option.describe()} failed: {code}: {message}") from None
            blocked.record(option, code, kind)
            continue
        except BotoCoreError as error:
            raise MusicsweepError(f"ec2 launch of {option.describe()} failed: {error}") from None
        return response["Instances"][0], option
    tried = "; ".join(blocked.attempts) or "no launch option left (check max_price and subnets)"
    raise MusicsweepError(f"ec2: no instance could be started: {tried}")
