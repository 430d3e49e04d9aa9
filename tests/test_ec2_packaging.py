"""The project wheel that cloud instances install: built with uv, stored once per content hash."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from musicsweep.remote.packaging import upload_wheel
from musicsweep.store.local import LocalStore


def test_wheel_is_uploaded_once_and_carries_the_worker_code(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    wheel = upload_wheel(store)
    key = wheel.key
    assert key.startswith("_packages/") and key.endswith("-py3-none-any.whl")
    assert upload_wheel(store) == wheel  # an unchanged project is not uploaded again
    assert list(store.list("_packages/")) == [key]
    assert hashlib.sha256(store.get_bytes(key)).hexdigest() == wheel.sha256  # what instances check
    with zipfile.ZipFile(store.local_path(key)) as wheel:
        names = set(wheel.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "Provides-Extra: worker" in wheel.read(metadata).decode()
    assert {"musicsweep/worker/loop.py", "musicsweep/backends/ec2/agent.py", "musicsweep/engine/tiny.py"} <= names
