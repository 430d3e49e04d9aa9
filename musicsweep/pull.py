"""Copy a sweep's results from the store into the local sweep folder: only what is new or changed."""

from __future__ import annotations

import json
from pathlib import Path

from musicsweep.atomic import atomic_write_json
from musicsweep.costs import CostRow, write_cost_report
from musicsweep.layout import SweepDir
from musicsweep.store import Store

PULLED_FOLDERS = ("audio", "costs", "markers", "logs", "workers")


def pull_results(store: Store, sweep: SweepDir) -> int:
    """Download keys whose local copy is missing or whose size/ETag changed; returns the count."""
    index_path = sweep.root / ".pulled.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    copied = 0
    for folder in PULLED_FOLDERS:
        for key, info in store.list(f"{sweep.name}/{folder}/").items():
            target = sweep.local_file(key)
            if store.local_path(key) == target:
                continue
            stamp = f"{info.size}:{info.etag}"
            if target.exists() and target.stat().st_size == info.size and index.get(key) == stamp:
                continue
            store.get_file(key, target)
            index[key] = stamp
            copied += 1
    if copied:
        atomic_write_json(index_path, index)
    return copied


def cost_rows(sweep: SweepDir) -> list[CostRow]:
    rows = []
    for path in sorted((sweep.root / "costs").glob("*.json")):
        rows.append(CostRow.from_dict(json.loads(path.read_text())))
    return rows


def merge_cost_report(sweep: SweepDir) -> Path:
    """Rewrite `cost_report.csv` from every pulled cost row."""
    write_cost_report(cost_rows(sweep), sweep.cost_report)
    return sweep.cost_report
