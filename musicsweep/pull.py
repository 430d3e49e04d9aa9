"""Copy a sweep's results from the store into the local sweep folder: only what is new or changed.

`.pulled.json` remembers, per key, the remote (size, ETag) and the local (size, mtime) of the
copy this module wrote. A copy that is still untouched is refreshed only when the remote changed.
A local file this module did not write is compared by size and, where the ETag is a plain MD5, by
content; a log it did not write is never replaced, since it is a local worker's live log.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from musicsweep.atomic import atomic_write_json
from musicsweep.costs import read_cost_rows, write_cost_report
from musicsweep.layout import SweepDir
from musicsweep.store import ObjectInfo, Store

PULLED_FOLDERS = ("audio", "costs", "markers", "logs", "workers")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


def local_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def same_content(path: Path, info: ObjectInfo) -> bool:
    """Size, then MD5 when the ETag is one (a multipart ETag is not, so size must do)."""
    if path.stat().st_size != info.size:
        return False
    if not _MD5.match(info.etag):
        return True
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == info.etag


def pull_results(store: Store, sweep: SweepDir) -> int:
    """Download keys missing locally or changed in the store (one listing call); returns the count."""
    index_path = sweep.root / ".pulled.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    before = dict(index)
    copied = 0
    for key, info in sorted(store.list(f"{sweep.name}/").items()):
        folder = key.split("/")[1]
        target = sweep.local_file(key)
        if folder not in PULLED_FOLDERS or store.local_path(key) == target:
            continue
        if target.exists():
            record = index.get(key)
            ours = record is not None and record["local"] == local_stamp(target)
            if ours and record["remote"] == [info.size, info.etag]:
                continue
            if not ours and folder == "logs":
                continue
            download = ours or not same_content(target, info)
        else:
            download = True
        if download:
            store.get_file(key, target)
            copied += 1
        index[key] = {"remote": [info.size, info.etag], "local": local_stamp(target)}
    if index != before:
        atomic_write_json(index_path, index)
    return copied


def merge_cost_report(sweep: SweepDir) -> Path:
    """Rewrite `cost_report.csv` from every pulled cost row."""
    write_cost_report(read_cost_rows(sweep.root / "costs"), sweep.cost_report)
    return sweep.cost_report
