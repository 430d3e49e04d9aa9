"""musicsweep: launch sweeps of MusicGen text-to-music generation.

The public names load on first use (PEP 562): a worker imports this package too, and must not
pay for the launcher's planner, estimator and terminal output it never runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from musicsweep.cli.run import run_sweep
    from musicsweep.errors import MusicsweepError
    from musicsweep.sweep.variants import VariantGenerator

__all__ = ["MusicsweepError", "VariantGenerator", "run_sweep"]
_HOMES = {
    "MusicsweepError": "musicsweep.errors",
    "VariantGenerator": "musicsweep.sweep.variants",
    "run_sweep": "musicsweep.cli.run",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'musicsweep' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
