"""Where finished results live: a local folder (`local`) or S3 (`s3`), behind one `Store` (`base`).

`open_store` picks the implementation by URL scheme; boto3 is imported only for `s3://`.
"""

from __future__ import annotations

from pathlib import Path

from musicsweep.config import StoreConfig
from musicsweep.store.base import Store
from musicsweep.store.local import LocalStore


def open_store(config: StoreConfig) -> Store:
    """A Store for `config.url`: `s3://bucket/prefix` or a folder."""
    if config.url.startswith("s3://"):
        from musicsweep.store.s3 import S3Store

        return S3Store(config)
    return LocalStore(Path(config.url))
