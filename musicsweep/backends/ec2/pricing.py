"""Spot prices: the current price per instance type and zone, the launch order, and lifetime cost.

Prices come from `describe_spot_price_history` (Linux/UNIX). The latest entry per zone is the
current price; over an instance's life the price in effect at each moment is the latest entry
at or before it, so the paid cost is that step function integrated from launch to termination.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from musicsweep.backends.ec2.config import EC2Config

PRODUCT = "Linux/UNIX"
MIN_BILLED_S = 60.0  # per-second billing with a one-minute minimum


@dataclass(frozen=True)
class SpotQuote:
    instance_type: str
    zone: str
    price_usd: float
    timestamp: datetime


@dataclass(frozen=True)
class LaunchOption:
    """One way to start an instance: type, zone (None: let EC2 choose), market and hourly rate."""

    instance_type: str
    zone: str | None
    market: str  # "spot" or "on-demand"
    hourly_usd: float

    def describe(self) -> str:
        return f"{self.instance_type} {self.market} in {self.zone or 'any zone'} at ${self.hourly_usd:.4f}/h"


def _history(client, instance_types: list[str], start: datetime, end: datetime | None = None, zone: str | None = None):
    request = {"InstanceTypes": instance_types, "ProductDescriptions": [PRODUCT], "StartTime": start}
    if end is not None:
        request["EndTime"] = end
    if zone is not None:
        request["AvailabilityZone"] = zone
    for page in client.get_paginator("describe_spot_price_history").paginate(**request):
        yield from page["SpotPriceHistory"]


def current_spot_prices(client, instance_types: list[str]) -> list[SpotQuote]:
    """The latest price of each type in each zone, cheapest first within each type (in config order)."""
    latest: dict[tuple[str, str], SpotQuote] = {}
    for entry in _history(client, list(instance_types), datetime.now(UTC)):
        quote = SpotQuote(
            entry["InstanceType"], entry["AvailabilityZone"], float(entry["SpotPrice"]), entry["Timestamp"]
        )
        key = (quote.instance_type, quote.zone)
        if key not in latest or quote.timestamp > latest[key].timestamp:
            latest[key] = quote
    order = {name: index for index, name in enumerate(instance_types)}
    return sorted(latest.values(), key=lambda q: (order.get(q.instance_type, len(order)), q.price_usd, q.zone))


def launch_options(quotes: list[SpotQuote], settings: EC2Config) -> list[LaunchOption]:
    """Spot in the cheapest zone first, then the next zones and types, then on-demand if allowed.

    Zones without a configured subnet are skipped when subnets are configured; zones above
    `max_price` are skipped when a max price is set.
    """
    options = []
    for quote in quotes:
        if settings.subnets and quote.zone not in settings.subnets:
            continue
        if settings.max_price is not None and quote.price_usd > settings.max_price:
            continue
        options.append(LaunchOption(quote.instance_type, quote.zone, "spot", quote.price_usd))
    if settings.allow_on_demand_fallback:
        for instance_type in settings.instance_types:
            zones = [q.zone for q in quotes if q.instance_type == instance_type]
            zones = [z for z in zones if z in settings.subnets] if settings.subnets else zones
            zone = zones[0] if zones else None
            options.append(LaunchOption(instance_type, zone, "on-demand", settings.on_demand_hourly_usd[instance_type]))
    return options


def hourly_rate(settings: EC2Config, option: LaunchOption) -> float:
    """What a worker on `option` is billed at: the configured `hourly_cost_usd`, else the option's price."""
    return settings.hourly_cost_usd if settings.hourly_cost_usd is not None else option.hourly_usd


def price_table(quotes: list[SpotQuote]) -> list[str]:
    """One line per instance type: its price in every zone, cheapest first."""
    lines = []
    for instance_type in dict.fromkeys(q.instance_type for q in quotes):
        zones = ", ".join(f"{q.zone} ${q.price_usd:.4f}" for q in quotes if q.instance_type == instance_type)
        lines.append(f"spot {instance_type}: {zones}")
    return lines


def integrate_price(history: list[tuple[datetime, float]], start: datetime, end: datetime) -> float:
    """USD paid from `start` to `end` under a price step function given as (time, USD/h) entries.

    Before the first entry the first price applies; billing is per second with a one-minute minimum.
    """
    if not history:
        return 0.0
    steps = sorted(history)
    end = max(end, start)
    billed_end = max(end.timestamp(), start.timestamp() + MIN_BILLED_S)
    total = 0.0
    for index, (moment, price) in enumerate(steps):
        seg_start = start.timestamp() if index == 0 else max(moment.timestamp(), start.timestamp())
        seg_end = steps[index + 1][0].timestamp() if index + 1 < len(steps) else billed_end
        seg_end = min(seg_end, billed_end)
        if seg_end > seg_start:
            total += (seg_end - seg_start) * price / 3600.0
    return total


def lifetime_spot_cost(client, instance_type: str, zone: str, start: datetime, end: datetime) -> float:
    """What a spot instance really paid between launch and termination, from the price history."""
    entries = _history(client, [instance_type], start, end, zone)
    history = [(e["Timestamp"], float(e["SpotPrice"])) for e in entries if e["InstanceType"] == instance_type]
    return integrate_price(history, start, end)
