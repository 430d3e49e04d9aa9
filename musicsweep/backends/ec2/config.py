"""`backends.ec2` in musicsweep.yaml: typed settings and the checks that need no AWS call.

Every error names the config file and the key, and is raised before anything is written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import boto3

from musicsweep.config import Config, at_least, typed_section
from musicsweep.errors import MusicsweepError


@dataclass(frozen=True)
class EC2Config:
    """Where and how worker instances run, and the spending limits that guard them."""

    ami: str = ""
    instance_profile: str = ""  # S3 access for workers; access keys never go into user data
    region: str = "us-east-1"
    instance_types: list[str] = field(default_factory=lambda: ["g5.xlarge"])  # ordered fallback list
    instances: int | None = None  # fleet size; or derive it from clips_per_instance
    clips_per_instance: int | None = None
    key_name: str | None = None
    security_group_ids: list[str] = field(default_factory=list)
    subnets: dict[str, str] = field(default_factory=dict)  # availability zone -> subnet id
    max_price: float | None = None  # none by default: a max price only adds interruptions
    allow_on_demand_fallback: bool = False
    on_demand_hourly_usd: dict[str, float] = field(default_factory=dict)  # per type, needed for the fallback
    max_runtime_minutes: int = 240  # `shutdown -h +N` backstop on every instance
    max_total_usd: float = 20.0
    hourly_cost_usd: float | None = at_least(0, None)  # overrides the spot price in estimates
    throughput: float | None = None  # audio seconds per wall second per instance: beats calibration
    startup_minutes: float | None = None  # boot + install before the worker starts: beats calibration
    root: str = "/opt/musicsweep"  # work folder on the instance
    python_version: str = "3.11"
    endpoint_url: str | None = None  # EC2 API endpoint (a local stand-in in tests)
    imds_url: str = "http://169.254.169.254"
    imds_poll_s: float = 5.0
    tags: dict[str, str] = field(default_factory=dict)


@functools.cache
def ec2_regions() -> frozenset[str]:
    """Regions botocore knows, read from its bundled data (no network call)."""
    return frozenset(boto3.session.Session().get_available_regions("ec2"))


def load_ec2_config(config: Config) -> EC2Config:
    """Parse and check `backends.ec2`, and that the store is one an instance can reach."""
    settings = typed_section(EC2Config, config.backend_section("ec2"), config.where("backends.ec2"))

    def fail(key: str, message: str) -> MusicsweepError:
        return MusicsweepError(f"{config.where(f'backends.ec2.{key}')}: {message}")

    if not settings.ami:
        raise fail("ami", "required (the machine image workers boot)")
    if not settings.instance_profile:
        raise fail("instance_profile", "required: workers reach S3 through it, never through keys in user data")
    if not settings.instance_types:
        raise fail("instance_types", "list at least one instance type")
    if settings.instances is not None and settings.clips_per_instance is not None:
        raise fail("instances", "set either instances or clips_per_instance, not both")
    for key in ("instances", "clips_per_instance", "max_runtime_minutes"):
        value = getattr(settings, key)
        if value is not None and value < 1:
            raise fail(key, f"must be at least 1, got {value}")
    for key in ("max_total_usd", "imds_poll_s", "throughput"):
        value = getattr(settings, key)
        if value is not None and value <= 0:
            raise fail(key, f"must be positive, got {value}")
    if settings.startup_minutes is not None and settings.startup_minutes < 0:
        raise fail("startup_minutes", f"must not be negative, got {settings.startup_minutes}")
    if settings.allow_on_demand_fallback:
        missing = [t for t in settings.instance_types if t not in settings.on_demand_hourly_usd]
        if missing:
            raise fail("on_demand_hourly_usd", f"allow_on_demand_fallback needs the on-demand rate of {missing[0]}")
    if settings.region not in ec2_regions():
        raise fail("region", f"unknown EC2 region {settings.region!r}")
    if not config.store.url.startswith("s3://"):
        raise MusicsweepError(f"{config.where('store')}: the ec2 backend needs an s3:// store, got {config.store.url}")
    return settings
