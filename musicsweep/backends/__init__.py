"""The one registry of backend names. Each backend's module is imported only when it is used, so
cloud SDKs (boto3's EC2 paths, runpod) load only for the backend that needs them.

Adding a backend: a module with a `Backend` subclass, one line here, and the conformance suite
(`tests/test_backend_conformance.py`) passing against its real part; see docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from musicsweep.errors import MusicsweepError

if TYPE_CHECKING:
    from musicsweep.backends.base import Backend
    from musicsweep.config import Config

BACKENDS = {
    "local": "musicsweep.backends.local:LocalBackend",
    "ssh": "musicsweep.backends.ssh:SSHBackend",
    "slurm": "musicsweep.backends.slurm.backend:SlurmBackend",
    "ec2": "musicsweep.backends.ec2.backend:EC2Backend",
    "runpod": "musicsweep.backends.runpod.backend:RunPodBackend",
}
BACKEND_NAMES = tuple(BACKENDS)


def unknown_backend(name: str, where: str) -> MusicsweepError:
    return MusicsweepError(f"{where}: unknown backend {name!r} (known: {list(BACKEND_NAMES)})")


def get_backend(name: str, config: Config) -> Backend:
    if name not in BACKENDS:
        raise unknown_backend(name, f"{config.source}: key 'backend'")
    module_name, class_name = BACKENDS[name].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(config)
