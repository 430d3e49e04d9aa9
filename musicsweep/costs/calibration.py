"""The user's own history, so the next estimate is made from measured figures, not a guess.

Each finished sweep adds one sample per launch and per (backend, machine, model, dtype, device):
the mean boot, setup, model-load, per-clip upload and idle seconds of its workers, and per batch
size the continuation work (`costs/continuation.py`) done and the wall seconds it took. The file
is `calibration_file()` (under `$XDG_CACHE_HOME`), and with `estimate.share` also `CALIBRATION_KEY`
in the store; both are plain JSON, documented in README.md. The newest `MAX_SAMPLES` per key are kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from musicsweep.atomic import atomic_write_json, set_aside
from musicsweep.billing import MachineTime, WorkerKey
from musicsweep.layout import CALIBRATION_KEY, WORKERS_DIR, SweepDir, calibration_file
from musicsweep.manifest import Manifest
from musicsweep.store.base import Store, json_bytes

logger = logging.getLogger(__name__)

VERSION = 1
MAX_SAMPLES = 10
ANY = "auto"  # a plan's dtype or device left to the worker matches every recorded one


def device_kind(device: str) -> str:
    """`cuda:1` and `cuda` calibrate alike."""
    return device.split(":", 1)[0]


@dataclass(frozen=True)
class CalibrationKey:
    backend: str
    machine: str  # host label, EC2 instance type or RunPod GPU type
    model: str
    dtype: str
    device: str

    def describe(self) -> str:
        return f"{self.machine} ({self.backend}), {self.model}, {self.dtype}, {self.device}"

    def matches(self, model: str, dtype: str, device: str) -> bool:
        return self.model == model and dtype in (ANY, self.dtype) and device_kind(device) in (ANY, self.device)


@dataclass(frozen=True)
class MeasuredWorker:
    """One worker's paid time split into the estimate's parts, from its lifetime record."""

    key: WorkerKey
    machine_s: float
    boot_s: float | None  # None where no provider span says when the machine started
    setup_s: float
    model_load_s: float
    generation_s: float
    upload_s: float
    idle_s: float
    clips: int
    models: dict[str, dict[str, Any]]
    batches: list[dict[str, Any]]

    @classmethod
    def of(cls, record: dict[str, Any], paid: MachineTime | None) -> MeasuredWorker:
        start, end = float(record["start"]), float(record["end"])
        boot = None if paid is None else max(0.0, start - paid.start)
        machine_s = max(0.0, end - start) if paid is None else paid.seconds
        setup, load = float(record.get("setup_s", 0.0)), float(record.get("model_load_s", 0.0))
        generation, upload = float(record.get("generation_s", 0.0)), float(record.get("upload_s", 0.0))
        return cls(
            key=(str(record.get("launch_id", "")), int(record["worker_id"])),
            machine_s=machine_s,
            boot_s=boot,
            setup_s=setup,
            model_load_s=load,
            generation_s=generation,
            upload_s=upload,
            idle_s=max(0.0, machine_s - (boot or 0.0) - setup - load - generation - upload),
            clips=int(record.get("clips", 0)),
            models=dict(record.get("models") or {}),
            batches=list(record.get("batches") or []),
        )


def read_measured(
    sweep: SweepDir, paid: Mapping[WorkerKey, MachineTime], finished_only: bool = True
) -> list[MeasuredWorker]:
    """The workers of the sweep's pulled `workers/` folder (a killed one's record is not finished)."""
    records = [json.loads(path.read_text()) for path in sorted(sweep.folder(WORKERS_DIR).glob("*.json"))]
    measured = []
    for record in records:
        if record.get("finished") or not finished_only:
            key = (str(record.get("launch_id", "")), int(record["worker_id"]))
            measured.append(MeasuredWorker.of(record, paid.get(key)))
    return measured


@dataclass
class Calibration:
    """Samples per key, oldest first."""

    entries: dict[CalibrationKey, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, payload: Any) -> Calibration:
        """Raises ValueError (one line) when `payload` is not a calibration."""
        calibration = cls()
        try:
            for entry in payload["entries"]:
                key = CalibrationKey(*(str(entry[name]) for name in ("backend", "machine", "model", "dtype", "device")))
                for sample in entry["samples"]:
                    calibration.add(key, dict(sample))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(" ".join(f"{type(error).__name__}: {error}".split())) from None
        return calibration

    def to_json(self) -> dict[str, Any]:
        entries = [
            {"backend": k.backend, "machine": k.machine, "model": k.model, "dtype": k.dtype, "device": k.device}
            | {"samples": samples}
            for k, samples in sorted(self.entries.items(), key=lambda item: tuple(vars(item[0]).values()))
        ]
        return {"version": VERSION, "entries": entries}

    def add(self, key: CalibrationKey, sample: dict[str, Any]) -> None:
        """A sample with a known id replaces the old one, so pulling a sweep twice counts it once."""
        samples = [s for s in self.entries.get(key, []) if s.get("id") != sample.get("id")] + [sample]
        self.entries[key] = sorted(samples, key=lambda s: float(s.get("time", 0.0)))[-MAX_SAMPLES:]

    def merge(self, other: Calibration) -> Calibration:
        for key, samples in other.entries.items():
            for sample in samples:
                self.add(key, sample)
        return self

    def closest(self, backend: str, machine: str, model: str, dtype: str, device: str) -> CalibrationKey | None:
        """The best history for a worker: same machine and backend, then same machine, then same
        backend (another host), then anywhere; more samples, then newer, break ties."""
        candidates = [key for key, samples in self.entries.items() if samples and key.matches(model, dtype, device)]
        if not candidates:
            return None

        def rank(key: CalibrationKey) -> tuple:
            distance = (key.machine != machine) * 2 + (key.backend != backend)
            newest = float(self.entries[key][-1].get("time", 0.0))
            return (distance, -len(self.entries[key]), -newest)

        return min(candidates, key=rank)


def load_calibration(path: Path | None = None, store: Store | None = None) -> Calibration:
    """The cache file, merged with the store's copy when one is given. An unreadable copy never
    blocks a launch: the file is set aside (`NAME.unreadable-TIME`) and the store's copy skipped,
    each with one warning, and the estimate uses what is left (the defaults, at worst)."""
    path = path or calibration_file()
    calibration = Calibration()
    if path.is_file():
        try:
            calibration = Calibration.from_json(json.loads(path.read_text()))
        except ValueError as error:
            aside = set_aside(path)
            logger.warning(f"{path}: unreadable calibration ({error}); moved to {aside.name}, estimates start afresh")
        except OSError as error:
            logger.warning(f"{path}: unreadable calibration ({error}); ignoring it")
    if store is not None and store.exists(CALIBRATION_KEY):
        where = f"{store.url}/{CALIBRATION_KEY}"
        try:
            calibration.merge(Calibration.from_json(json.loads(store.get_bytes(CALIBRATION_KEY))))
        except ValueError as error:
            logger.warning(f"{where}: unreadable shared calibration ({error}); ignoring it")
    return calibration


def save_calibration(calibration: Calibration, path: Path | None = None, store: Store | None = None) -> None:
    atomic_write_json(path or calibration_file(), calibration.to_json())
    if store is not None:
        store.put_bytes(CALIBRATION_KEY, json_bytes(calibration.to_json()))


def worker_machines(manifest: Manifest) -> dict[WorkerKey, str]:
    """Each worker's machine as its launch's estimate named it, else the host label of its jobs;
    a backend's `worker_machines` (what really ran) beats both."""
    machines = {
        (entry.launch or "", int(entry.worker)): entry.host or "" for entry in manifest.jobs.values() if entry.assigned
    }
    for launch in manifest.launches:
        for worker in (launch.estimate or {}).get("workers", []):
            machines[(launch.id, int(worker["worker_id"]))] = str(worker["machine"])
    return machines


def sweep_samples(
    manifest: Manifest, measured: list[MeasuredWorker], machines: Mapping[WorkerKey, str] | None = None
) -> dict[CalibrationKey, dict[str, Any]]:
    """One sample per (key, launch) from the finished workers that loaded a model."""
    machines = worker_machines(manifest) | dict(machines or {})
    grouped: dict[tuple[CalibrationKey, str], list[tuple[MeasuredWorker, str]]] = {}
    for worker in measured:
        for model, loaded in worker.models.items():
            if "load_s" not in loaded:
                continue
            key = CalibrationKey(
                manifest.backend,
                machines.get(worker.key, ""),
                model,
                str(loaded["dtype"]),
                device_kind(str(loaded["device"])),
            )
            grouped.setdefault((key, worker.key[0]), []).append((worker, model))
    samples = {}
    for (key, launch_id), members in grouped.items():
        workers = [worker for worker, _ in members]
        clips = sum(worker.clips for worker in workers)
        boots = [worker.boot_s for worker in workers if worker.boot_s is not None]
        batches: dict[str, dict[str, float]] = {}
        for worker, model in members:
            for batch in worker.batches:
                if batch["model"] == model:
                    totals = batches.setdefault(str(batch["size"]), {"count": 0, "work_s": 0.0, "wall_s": 0.0})
                    for name in totals:
                        totals[name] += batch[name]
        samples[key] = {
            "id": f"{manifest.sweep}/{launch_id}",
            "time": time.time(),
            "workers": len(workers),
            "clips": clips,
            "boot_s": round(fmean(boots), 3) if boots else None,
            "setup_s": round(fmean(w.setup_s for w in workers), 3),
            "model_load_s": round(fmean(float(w.models[m]["load_s"]) for w, m in members), 3),
            "upload_s": round(sum(w.upload_s for w in workers) / clips, 4) if clips else None,
            "idle_s": round(fmean(w.idle_s for w in workers), 3),
            "batch_size": max((int(w.models[m].get("batch_size", 0)) for w, m in members), default=0) or None,
            "batches": batches,
        }
    return samples


def record_sweep(
    sweep: SweepDir,
    manifest: Manifest,
    paid: Mapping[WorkerKey, MachineTime],
    store: Store | None = None,
    machines: Mapping[WorkerKey, str] | None = None,
) -> list[CalibrationKey]:
    """Add the sweep's samples to the cache file (and the store's copy); returns the keys touched."""
    samples = sweep_samples(manifest, read_measured(sweep, paid), machines)
    if not samples:
        return []
    calibration = load_calibration(store=store)
    for key, sample in samples.items():
        calibration.add(key, sample)
    save_calibration(calibration, store=store)
    return list(samples)
