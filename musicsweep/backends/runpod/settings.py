"""`backends.runpod` in musicsweep.yaml, checked before anything is created."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from musicsweep.errors import MusicsweepError

CLOUD_TYPES = ("ALL", "SECURE", "COMMUNITY")


@dataclass(frozen=True)
class RunPodSettings:
    """`backends.runpod` in musicsweep.yaml. `remote_dir` and `pod_env_file` may name `{pod_id}`."""

    pods: int = 1
    gpu_types: tuple[str, ...] = ("NVIDIA L40S",)
    cloud_type: str = "SECURE"
    image: str = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
    container_disk_gb: int = 50
    volume_gb: int = 0
    public_key_file: str = "~/.ssh/id_ed25519.pub"
    identity_file: str = "~/.ssh/id_ed25519"
    user: str = "root"
    remote_dir: str = "/workspace/musicsweep"
    pod_env_file: str = "/etc/rp_environment"
    python: str | None = None
    setup: str | None = None
    env: tuple[str, ...] = ()
    ready_timeout_s: float = 900.0
    poll_interval_s: float = 5.0
    exit_grace_s: float = 60.0
    api_key: str | None = None
    api_attempts: int = 5
    api_backoff_s: float = 1.0

    def check(self, where: str) -> None:
        if self.pods < 1:
            raise MusicsweepError(f"{where}.pods: must be at least 1, got {self.pods}")
        if not self.gpu_types:
            raise MusicsweepError(f"{where}.gpu_types: list at least one GPU type")
        if self.cloud_type not in CLOUD_TYPES:
            raise MusicsweepError(f"{where}.cloud_type: expected one of {list(CLOUD_TYPES)}, got {self.cloud_type!r}")
        if min(self.ready_timeout_s, self.poll_interval_s, self.api_attempts) <= 0 or self.exit_grace_s < 0:
            raise MusicsweepError(
                f"{where}: 'ready_timeout_s', 'poll_interval_s', 'api_attempts' and 'exit_grace_s' must be positive"
            )
        for key in ("remote_dir", "pod_env_file"):
            try:
                getattr(self, key).format(pod_id="x")
            except (KeyError, IndexError, ValueError):
                raise MusicsweepError(f"{where}.{key}: only '{{pod_id}}' may appear in braces") from None
        for key in ("public_key_file", "identity_file"):
            if not Path(getattr(self, key)).expanduser().is_file():
                raise MusicsweepError(f"{where}.{key}: no such file: {getattr(self, key)}")
