"""The settings a sweep was launched with, recorded in its manifest and used by every later command.

`pull`, status, cancel and relaunch rebuild their `Config` from the manifest (store, the
backend's settings, engine and recovery), so an edit of musicsweep.yaml, or a store or Hydra
`backend.settings` override given only at launch, never silently redirects a running sweep. When
musicsweep.yaml now says something else, they warn once and keep the launched values.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict

from musicsweep.backends import get_backend
from musicsweep.backends.base import Backend
from musicsweep.config import Config, EngineConfig, RecoveryConfig, StoreConfig, load_config, typed_section
from musicsweep.layout import SweepDir, latest_sweep
from musicsweep.manifest import Manifest

logger = logging.getLogger(__name__)


def record_settings(manifest: Manifest, config: Config) -> None:
    """Write what this launch runs with into the manifest."""
    manifest.backend, manifest.store, manifest.config_source = config.backend, asdict(config.store), config.source
    manifest.backend_settings = config.backend_section(config.backend)
    manifest.engine, manifest.recovery = asdict(config.engine), asdict(config.recovery)


def launched_config(config: Config, manifest: Manifest) -> Config:
    """`config` with the manifest's launch settings; warns about each one musicsweep.yaml now changes."""
    where = f"{config.source} (launched with {manifest.config_source or 'unknown'})"
    launched: dict = {"backend": manifest.backend or config.backend}
    if manifest.store:
        launched["store"] = typed_section(StoreConfig, manifest.store, "manifest store")
    if manifest.engine is not None:
        launched["engine"] = typed_section(EngineConfig, manifest.engine, "manifest engine")
    if manifest.recovery is not None:
        launched["recovery"] = typed_section(RecoveryConfig, manifest.recovery, "manifest recovery")
    if manifest.backend_settings is not None:
        launched["backends"] = config.backends | {launched["backend"]: dict(manifest.backend_settings)}
    for key, value in launched.items():
        now = getattr(config, key)
        if key == "backends":
            name = launched["backend"]
            now, value, key = config.backend_section(name), value[name], f"backends.{name}"
        if now != value:
            logger.warning(
                f"{where}: key '{key}' differs from the launch of sweep {manifest.sweep}; using the launched value"
            )
    return dataclasses.replace(config, **launched)


def open_launched(name: str | None) -> tuple[SweepDir, Manifest, Config, Backend]:
    """The sweep (default: the latest), its manifest, and the config and backend it was launched with."""
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name or latest_sweep(config.sweeps_dir))
    manifest = sweep.read_manifest()
    config = launched_config(config, manifest)
    return sweep, manifest, config, get_backend(manifest.backend, config)
