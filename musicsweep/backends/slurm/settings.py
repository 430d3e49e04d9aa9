"""`backends.slurm` in musicsweep.yaml, checked before anything is submitted."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from musicsweep.config import Config, at_least
from musicsweep.errors import MusicsweepError
from musicsweep.remote.ssh import SSHHost

# sbatch's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
_UNLIMITED = ("UNLIMITED", "INFINITE", "-1")


@dataclass(frozen=True)
class SlurmConfig:
    """`backends.slurm` in musicsweep.yaml. Unset options are left to the cluster's defaults."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gres: str | None = None
    cpus_per_task: int = 1
    mem: str | None = None
    time: str | None = None
    array_parallelism: int = 4
    shards: int | None = None
    clips_per_shard: int = 8
    max_requeues: int = 3
    signal_lead_s: int = 90
    sbatch_lines: list[str] = field(default_factory=list)
    prepare: list[str] = field(default_factory=list)
    hourly_cost_usd: float = at_least(0, 0.0)
    python: str | None = None
    job_name: str | None = None
    login: SSHHost | None = None

    def sbatch_options(self) -> list[str]:
        """The configured resource options, as sbatch flags."""
        options = [f"--cpus-per-task={self.cpus_per_task}"]
        for key in ("partition", "account", "qos", "gres", "mem", "time"):
            value = getattr(self, key)
            if value is not None:
                options.append(f"--{key}={value}")
        return options

    def header_lines(self) -> str:
        """The extra `#SBATCH` lines; an entry may omit the `#SBATCH` prefix."""
        return "\n".join(line if line.startswith("#SBATCH") else f"#SBATCH {line}" for line in self.sbatch_lines)

    def culprit(self, message: str) -> str | None:
        """The key an sbatch error is about, when the message says which."""
        lowered = message.lower()
        return next(
            (
                key
                for key in ("partition", "account", "qos", "gres", "time", "mem")
                if key in lowered and getattr(self, key) is not None
            ),
            None,
        )


def time_limit_s(text: str) -> float | None:
    """Seconds in a SLURM time limit, `math.inf` for unlimited, None when the format is unknown."""
    if text.upper() in _UNLIMITED:
        return math.inf
    match = _TIME.match(text)
    if not match:
        return None
    days, day_hours, day_minutes, day_seconds, first, second, third = (int(g) if g else 0 for g in match.groups())
    if match.group(1) is not None:
        return days * 86400 + day_hours * 3600 + day_minutes * 60 + day_seconds
    if match.group(7) is not None:
        return first * 3600 + second * 60 + third
    return first * 60 + second


def check_settings(settings: SlurmConfig, config: Config) -> None:
    def where(key: str) -> str:
        return config.where(f"backends.slurm.{key}")

    for key in ("cpus_per_task", "array_parallelism", "clips_per_shard", "signal_lead_s"):
        if getattr(settings, key) < 1:
            raise MusicsweepError(f"{where(key)}: must be at least 1, got {getattr(settings, key)}")
    if settings.shards is not None and settings.shards < 1:
        raise MusicsweepError(f"{where('shards')}: must be at least 1, got {settings.shards}")
    if settings.max_requeues < 0:
        raise MusicsweepError(f"{where('max_requeues')}: must not be negative, got {settings.max_requeues}")
    for key in ("sbatch_lines", "prepare"):
        for line in getattr(settings, key):
            if "\n" in line:
                raise MusicsweepError(f"{where(key)}: one option or command per entry, without newlines: {line!r}")
