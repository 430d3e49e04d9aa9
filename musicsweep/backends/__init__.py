"""Backends: where workers run. `get_backend` imports a backend's module only when it is used, so
cloud SDKs (boto3's EC2 paths, runpod) load only for the backend that needs them.

Adding a backend: a module with a `Backend` subclass (`base.py`), one line in `registry.py`, and
the conformance suite (`tests/test_backend_conformance.py`) passing against its real part; see
docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from musicsweep.backends.registry import BACKEND_NAMES, BACKENDS, unknown_backend_message
from musicsweep.errors import MusicsweepError

if TYPE_CHECKING:
    from musicsweep.backends.base import Backend
    from musicsweep.config import Config

__all__ = ["BACKEND_NAMES", "get_backend", "unknown_backend"]


def unknown_backend(name: str, where: str) -> MusicsweepError:
    return MusicsweepError(unknown_backend_message(name, where))


def get_backend(name: str, config: Config) -> Backend:
    if name not in BACKENDS:
        raise unknown_backend(name, f"{config.source}: key 'backend'")
    module_name, class_name = BACKENDS[name].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(config)
