"""One module per backend, imported only when used, so cloud SDKs load only when needed."""

from __future__ import annotations

import importlib

from musicsweep.backends.base import Backend
from musicsweep.config import Config
from musicsweep.errors import MusicsweepError

_MODULES = {
    "local": "musicsweep.backends.local:LocalBackend",
    "ssh": "musicsweep.backends.ssh:SSHBackend",
    "slurm": "musicsweep.backends.slurm.backend:SlurmBackend",
    "ec2": "musicsweep.backends.ec2.backend:EC2Backend",
    "runpod": "musicsweep.backends.runpod.backend:RunPodBackend",
}


def get_backend(name: str, config: Config) -> Backend:
    if name not in _MODULES:
        raise MusicsweepError(f"{config.source}: key 'backend': unknown backend {name!r} (known: {sorted(_MODULES)})")
    module_name, class_name = _MODULES[name].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(config)
