"""Spot price selection, lifetime cost and launch-error fallback, with botocore's Stubber and real-looking data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from musicsweep.backends.ec2.config import EC2Config
from musicsweep.backends.ec2.launch import Blocked, classify_launch_error, launch_instance, run_request
from musicsweep.backends.ec2.pricing import (
    LaunchOption,
    current_spot_prices,
    integrate_price,
    launch_options,
    lifetime_spot_cost,
)
from musicsweep.errors import MusicsweepError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def entry(instance_type: str, zone: str, price: str, minutes_ago: int) -> dict:
    return {
        "AvailabilityZone": zone,
        "InstanceType": instance_type,
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": price,
        "Timestamp": NOW - timedelta(minutes=minutes_ago),
    }


# What us-east-1 answers for g5 types (prices of late 2024), several entries per zone, newest not first.
HISTORY = [
    entry("g5.xlarge", "us-east-1a", "0.4512", 5),
    entry("g5.xlarge", "us-east-1a", "0.3890", 90),
    entry("g5.xlarge", "us-east-1b", "0.3756", 30),
    entry("g5.xlarge", "us-east-1b", "0.5120", 2),
    entry("g5.xlarge", "us-east-1c", "0.4101", 12),
    entry("g5.xlarge", "us-east-1d", "0.4015", 40),
    entry("g5.2xlarge", "us-east-1a", "0.5311", 7),
    entry("g5.2xlarge", "us-east-1f", "0.4975", 3),
]


@pytest.fixture
def ec2():
    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def settings(**changes) -> EC2Config:
    return EC2Config(ami="ami-0abc", instance_profile="musicsweep-worker", **changes)


def test_latest_price_per_zone_and_cheapest_zone_first(ec2) -> None:
    client, stubber = ec2
    request = {"InstanceTypes": ["g5.xlarge", "g5.2xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY}
    stubber.add_response("describe_spot_price_history", {"SpotPriceHistory": HISTORY}, request)
    quotes = current_spot_prices(client, ["g5.xlarge", "g5.2xlarge"])
    got = [(q.instance_type, q.zone, q.price_usd) for q in quotes]
    assert got == [
        ("g5.xlarge", "us-east-1d", 0.4015),
        ("g5.xlarge", "us-east-1c", 0.4101),
        ("g5.xlarge", "us-east-1a", 0.4512),  # the 90-minute-old 0.3890 is no longer current
        ("g5.xlarge", "us-east-1b", 0.5120),
        ("g5.2xlarge", "us-east-1f", 0.4975),
        ("g5.2xlarge", "us-east-1a", 0.5311),
    ]
    options = launch_options(quotes, settings(instance_types=["g5.xlarge", "g5.2xlarge"], max_price=0.5))
    assert [(o.instance_type, o.zone) for o in options] == [
        ("g5.xlarge", "us-east-1d"),
        ("g5.xlarge", "us-east-1c"),
        ("g5.xlarge", "us-east-1a"),
        ("g5.2xlarge", "us-east-1f"),
    ]
    with_od = launch_options(
        quotes,
        settings(
            instance_types=["g5.xlarge"],
            subnets={"us-east-1c": "subnet-0c", "us-east-1a": "subnet-0a"},
            allow_on_demand_fallback=True,
            on_demand_hourly_usd={"g5.xlarge": 1.006},
        ),
    )
    spot_and_od = [(o.instance_type, o.zone, o.market) for o in with_od if o.instance_type == "g5.xlarge"]
    assert spot_and_od == [
        ("g5.xlarge", "us-east-1c", "spot"),
        ("g5.xlarge", "us-east-1a", "spot"),
        ("g5.xlarge", "us-east-1c", "on-demand"),
    ]


def test_lifetime_cost_follows_the_price_steps(ec2) -> None:
    client, stubber = ec2
    start, end = NOW - timedelta(hours=2), NOW
    steps = [entry("g5.xlarge", "us-east-1b", "0.40", 150), entry("g5.xlarge", "us-east-1b", "0.60", 60)]
    request = {
        "InstanceTypes": ["g5.xlarge"],
        "ProductDescriptions": ["Linux/UNIX"],
        "StartTime": start,
        "EndTime": end,
        "AvailabilityZone": "us-east-1b",
    }
    stubber.add_response("describe_spot_price_history", {"SpotPriceHistory": steps}, request)
    # 0.40 $/h for the first hour, then 0.60 $/h: not the max price, not the launch price.
    assert lifetime_spot_cost(client, "g5.xlarge", "us-east-1b", start, end) == pytest.approx(1.00)
    assert integrate_price([(start, 3.6)], start, start + timedelta(seconds=10)) == pytest.approx(0.06)  # 1-min min


def test_error_classes() -> None:
    assert classify_launch_error("InsufficientInstanceCapacity") == "zone"
    assert classify_launch_error("SpotMaxPriceTooLow") == "zone"
    assert classify_launch_error("MaxSpotInstanceCountExceeded") == "spot"
    assert classify_launch_error("VcpuLimitExceeded") == "type"
    assert classify_launch_error("InvalidAMIID.NotFound") == "fatal"


def _instance(instance_id: str) -> dict:
    return {"Instances": [{"InstanceId": instance_id}]}


def test_fallback_to_next_zone_then_type_then_on_demand(ec2) -> None:
    client, stubber = ec2
    config = settings(allow_on_demand_fallback=True, on_demand_hourly_usd={"g5.xlarge": 1.006, "g5.2xlarge": 1.212})
    options = [
        LaunchOption("g5.xlarge", "us-east-1d", "spot", 0.4015),
        LaunchOption("g5.xlarge", "us-east-1c", "spot", 0.4101),
        LaunchOption("g5.2xlarge", "us-east-1f", "spot", 0.4975),
        LaunchOption("g5.xlarge", "us-east-1d", "on-demand", 1.006),
    ]
    request = lambda option: run_request(config, option, "#!/bin/bash\n", [])  # noqa: E731
    blocked = Blocked()
    stubber.add_client_error("run_instances", "InsufficientInstanceCapacity", "no g5.xlarge in us-east-1d")
    stubber.add_response("run_instances", _instance("i-0aaa"), request(options[1]))
    instance, option = launch_instance(client, options, blocked, request)
    assert instance["InstanceId"] == "i-0aaa" and option.zone == "us-east-1c"
    # The next instance skips 1d at once; a spot quota error then moves straight to on-demand.
    stubber.add_client_error("run_instances", "MaxSpotInstanceCountExceeded", "spot quota", expected_params=None)
    stubber.add_response("run_instances", _instance("i-0bbb"), request(options[3]))
    instance, option = launch_instance(client, options, blocked, request)
    assert instance["InstanceId"] == "i-0bbb" and option.market == "on-demand"
    assert "InstanceMarketOptions" not in request(options[3])
    assert [a.split(":")[-1].strip() for a in blocked.attempts] == [
        "InsufficientInstanceCapacity",
        "MaxSpotInstanceCountExceeded",
    ]


def test_fatal_error_and_exhausted_options_fail_with_one_line(ec2) -> None:
    client, stubber = ec2
    config = settings(max_price=0.45)
    options = [LaunchOption("g5.xlarge", "us-east-1d", "spot", 0.4015)]
    request = lambda option: run_request(config, option, "", [])  # noqa: E731
    assert request(options[0])["InstanceMarketOptions"]["SpotOptions"] == {
        "SpotInstanceType": "one-time",
        "InstanceInterruptionBehavior": "terminate",
        "MaxPrice": "0.45000",
    }
    stubber.add_client_error("run_instances", "InvalidAMIID.NotFound", "The image id '[ami-0abc]' does not exist")
    with pytest.raises(MusicsweepError, match="InvalidAMIID.NotFound"):
        launch_instance(client, options, Blocked(), request)
    stubber.add_client_error("run_instances", "SpotMaxPriceTooLow", "Your price 0.45 is below the current price")
    with pytest.raises(MusicsweepError, match="no instance could be started: .*SpotMaxPriceTooLow") as info:
        launch_instance(client, options, Blocked(), request)
    assert "\n" not in str(info.value)
