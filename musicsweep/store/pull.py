"""Copy a sweep's results from the store into the local sweep folder: only what is new or changed.

`.pulled.json` remembers, per key, the remote (size, ETag) and the local (size, mtime) of the
copy this module wrote. A copy that is still untouched is refreshed only when the remote changed.
A local file this module did not write is compared by size and, where the ETag is a plain MD5, by
content; a log it did not write is never replaced, since it is a local worker's live log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from musicsweep.atomic import atomic_write_json
from musicsweep.layout import AUDIO_DIR, LOGS_DIR, PULLED_FOLDERS, SweepDir, key_folder
from musicsweep.store.base import ObjectInfo, Store
from musicsweep.store.tempfiles import remove_stale_pull_temps
from musicsweep.store.verify import HEADER_BYTES, parse_wav_header

logger = logging.getLogger(__name__)

DOWNLOAD_THREADS = 8  # boto3 clients are thread-safe; per-request latency, not bandwidth, bounds a pull
_MD5 = re.compile(r"^[0-9a-f]{32}$")


def local_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def index_entry(info: ObjectInfo, path: Path) -> dict:
    return {"remote": [info.size, info.etag], "local": local_stamp(path)}


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


def download_problem(path: Path, key: str, info: ObjectInfo) -> str | None:
    """Why a downloaded file is not the listed object (size, MD5), or, for a WAV, not a whole one."""
    if not same_content(path, info):
        return f"got {path.stat().st_size} bytes, not the listed {info.size} bytes with ETag {info.etag}"
    if key_folder(key) == AUDIO_DIR and key.endswith(".wav"):
        with open(path, "rb") as handle:
            header = parse_wav_header(handle.read(HEADER_BYTES))
        if header is None or header.declared_size != info.size:
            declared = "no WAV header" if header is None else f"its header declares {header.declared_size} bytes"
            return f"incomplete in the store: {info.size} bytes, {declared}"
    return None


def read_pulled_index(path: Path) -> dict | None:
    """What earlier pulls copied; None when unreadable, and the pull rebuilds it (it compares
    content with the store anyway, so nothing is copied twice that is already whole)."""
    try:
        index = json.loads(path.read_text())
        records = index.values() if isinstance(index, dict) else [None]
        if all(isinstance(record, dict) and {"local", "remote"} <= set(record) for record in records):
            return index
        problem = "not an index of pulled keys"
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        problem = " ".join(str(error).split())
    logger.warning("%s: unreadable (%s); rebuilding it", path, problem)
    return None


def pull_results(store: Store, sweep: SweepDir) -> int:
    """Download keys missing locally or changed in the store (one listing call); returns the count.

    Every download is verified; a bad one is removed and reported, never indexed, so the next pull
    tries again. Temporary files left by an earlier, killed pull are removed first. A folder store
    that is the sweeps folder itself has every key in place already: nothing is listed.
    """
    if store.local_path(sweep.name) == sweep.root:
        return 0
    for folder in PULLED_FOLDERS:
        remove_stale_pull_temps(sweep.folder(folder))
    index_path = sweep.pulled_index
    index = read_pulled_index(index_path)
    before = None if index is None else dict(index)
    index = index or {}
    wanted: dict[str, ObjectInfo] = {}
    for key, info in sorted(store.list(sweep.keys.prefix).items()):
        folder = key_folder(key)
        target = sweep.local_file(key)
        if folder not in PULLED_FOLDERS or store.local_path(key) == target:
            continue
        if target.exists():
            record = index.get(key)
            ours = record is not None and record["local"] == local_stamp(target)
            if ours and record["remote"] == [info.size, info.etag]:
                continue
            if not ours and folder == LOGS_DIR:
                continue
            if not ours and same_content(target, info):
                index[key] = index_entry(info, target)
                continue
        wanted[key] = info
    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        list(pool.map(lambda key: store.get_file(key, sweep.local_file(key)), wanted))
    for key, info in list(wanted.items()):
        problem = download_problem(sweep.local_file(key), key, info)
        if problem is None:
            index[key] = index_entry(info, sweep.local_file(key))
            continue
        logger.warning("pull: %s: %s; not kept", key, problem)
        sweep.local_file(key).unlink(missing_ok=True)
        del wanted[key]
    if index != before:
        atomic_write_json(index_path, index)
    return len(wanted)
