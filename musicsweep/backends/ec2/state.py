"""What the manifest keeps of an EC2 sweep: every instance started, for whom, where and at what rate.

The JSON is `{instance id: {launch, worker, instance_type, zone, market, hourly_usd}}`, as
manifests have always held it under `ec2_instances`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from musicsweep.billing import WorkerKey
from musicsweep.manifest import records_from_json, records_to_json


@dataclass(frozen=True)
class StartedInstance:
    launch: str
    worker: int
    instance_type: str
    zone: str
    market: str
    hourly_usd: float

    @property
    def key(self) -> WorkerKey:
        return (self.launch, int(self.worker))


@dataclass
class EC2Instances:
    KEY: ClassVar[str] = "ec2_instances"
    started: dict[str, StartedInstance] = field(default_factory=dict)  # instance id -> what it runs

    def to_json(self) -> dict[str, Any]:
        return records_to_json(self.started)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Self:
        return cls(records_from_json(StartedInstance, payload))
