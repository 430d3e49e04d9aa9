"""`backends.ray` in musicsweep.yaml, checked before anything is submitted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from musicsweep.config import Config, at_least
from musicsweep.errors import MusicsweepError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"


@dataclass(frozen=True)
class RayConfig:
    """`backends.ray`. `workers` left unset starts one worker per `num_gpus` GPUs of the cluster
    (one per `num_cpus` CPUs on a cluster without GPUs)."""

    address: str = DEFAULT_ADDRESS  # the cluster's Jobs API (its dashboard)
    workers: int | None = at_least(1, None)
    num_gpus: float = at_least(0, 1.0)
    num_cpus: float = at_least(0, 1.0)
    resources: dict[str, float] = field(default_factory=dict)  # custom resources per worker
    runtime_env: dict[str, Any] = field(default_factory=dict)  # added to what musicsweep sends
    max_retries: int = at_least(0, 3)  # restarts of a worker lost with its node
    hourly_cost_usd: float = at_least(0, 0.0)  # per worker
    hourly_cost_per_gpu_usd: float = at_least(0, 0.0)  # added per GPU a worker holds
    prepare: list[str] = field(default_factory=list)  # bash run before each worker
    python: str = "python"  # on the nodes: the job's entrypoint and every worker
    ship_code: bool = True  # send this musicsweep with the job (False: the nodes have it installed)
    kill_grace_s: float = at_least(0, 5.0)  # a stopped worker's tree: SIGTERM, then SIGKILL after this

    @property
    def worker_rate(self) -> float:
        """One worker's hourly cost: its own rate plus its GPUs'."""
        return self.hourly_cost_usd + self.hourly_cost_per_gpu_usd * self.num_gpus

    def demand(self) -> dict[str, float]:
        """What one worker asks of a node, by Ray's resource names."""
        return {"GPU": self.num_gpus, "CPU": self.num_cpus, **self.resources}


def check_settings(settings: RayConfig, config: Config) -> None:
    def where(key: str) -> str:
        return config.where(f"backends.ray.{key}")

    if not settings.address.startswith(("http://", "https://")):
        raise MusicsweepError(f"{where('address')}: {settings.address!r} is not the Jobs API's http(s):// address")
    for name, amount in settings.resources.items():
        if not isinstance(amount, int | float) or amount < 0:
            raise MusicsweepError(f"{where(f'resources.{name}')}: must be a non-negative number, got {amount!r}")
    if settings.num_gpus == 0 and settings.num_cpus == 0 and not settings.resources:
        raise MusicsweepError(f"{where('num_cpus')}: a worker must ask for some resource")
    if "env_vars" in settings.runtime_env and not isinstance(settings.runtime_env["env_vars"], dict):
        raise MusicsweepError(f"{where('runtime_env.env_vars')}: must be a mapping of names to values")
    for line in settings.prepare:
        if "\n" in line:
            raise MusicsweepError(f"{where('prepare')}: one command per entry, without newlines: {line!r}")
