"""Where finished results live: a local folder (`local`) or S3 (`s3`), behind one `Store` (`base`).

`open_store` picks the implementation by URL scheme; boto3 is imported only for `s3://`.
"""

from __future__ import annotations

import json
from pathlib import Path

from musicsweep.config import DEFAULT_OUTAGE_BUDGET_S, StoreConfig
from musicsweep.store.base import Store
from musicsweep.store.local import LocalStore


def open_store(config: StoreConfig) -> Store:
    """A Store for `config.url`: `s3://bucket/prefix` or a folder."""
    if config.url.startswith("s3://"):
        from musicsweep.store.s3 import S3Store

        return S3Store(config)
    return LocalStore(Path(config.url))


def store_config_to_env(config: StoreConfig) -> dict[str, str]:
    """The store settings a worker needs (never credentials: those come from the host's own chain)."""
    options = {k: v for k, v in (("endpoint_url", config.endpoint_url), ("region", config.region)) if v}
    if config.profile:
        options["profile"] = config.profile
    if config.outage_budget_s != DEFAULT_OUTAGE_BUDGET_S:
        options["outage_budget_s"] = config.outage_budget_s
    return {"MUSICSWEEP_STORE": config.url, "MUSICSWEEP_STORE_OPTIONS": json.dumps(options, sort_keys=True)}


def store_config_from_env(environ: dict[str, str]) -> StoreConfig:
    options = json.loads(environ.get("MUSICSWEEP_STORE_OPTIONS") or "{}")
    return StoreConfig(url=environ["MUSICSWEEP_STORE"], **options)
