"""A batch's window checkpoint in the store: one object per clip, `{sweep}/partial/{job_id}.codes`.

Each object holds that clip's codes (int16: about 400 bytes per second of audio), the batch's RNG
state and the batch's composition (its job ids in order). A batch resumes only when every one of
its clips has a checkpoint of this very composition at the same window: the RNG stream is the
batch's, so any other composition could not continue it bit for bit and starts over instead.
Each write is a single create-or-replace `put_bytes`, so a reader sees a whole checkpoint or
the previous one.
"""

from __future__ import annotations

import io
from typing import Any

from musicsweep.engine.checkpoint import WindowCheckpoint
from musicsweep.job import Job
from musicsweep.layout import JobPaths
from musicsweep.store.base import Store

FORMAT = 1


def key(job: Job) -> str:
    return JobPaths(".", job.sweep, job.job_id, job.output_name).partial_key


def encode(batch: list[Job], index: int, checkpoint: WindowCheckpoint) -> bytes:
    import torch

    payload = {
        "format": FORMAT,
        "batch": [job.job_id for job in batch],
        "index": index,
        "windows_done": checkpoint.windows_done,
        "windows_total": checkpoint.windows_total,
        "codes": checkpoint.codes[index].to(torch.int16),  # codes < 2048 (the codebook size)
        "rng_state": checkpoint.rng_state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def decode(data: bytes) -> dict[str, Any] | None:
    """The payload, or None for an object this version cannot read (treated as stale)."""
    import torch

    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except Exception:
        return None
    return payload if isinstance(payload, dict) and payload.get("format") == FORMAT else None


def save(store: Store, batch: list[Job], checkpoint: WindowCheckpoint) -> None:
    for index, job in enumerate(batch):
        store.put_bytes(key(job), encode(batch, index, checkpoint))


def load(store: Store, batch: list[Job]) -> WindowCheckpoint | None:
    """The batch's checkpoint, if each clip has one of this composition at the same window."""
    import torch

    ids = [job.job_id for job in batch]
    payloads = []
    for index, job in enumerate(batch):
        if not store.exists(key(job)):
            return None
        payload = decode(store.get_bytes(key(job)))
        if payload is None or payload["batch"] != ids or payload["index"] != index:
            return None
        payloads.append(payload)
    # Killed between two clips' writes, some clips are a window ahead: their codes extend the
    # others' (one RNG stream), so cut them back to the oldest window, whose RNG state is kept.
    oldest = min(payloads, key=lambda p: p["windows_done"])
    if any(p["windows_total"] != oldest["windows_total"] for p in payloads):
        return None
    frames = oldest["codes"].shape[-1]
    codes = torch.stack([p["codes"][:, :frames].long() for p in payloads])
    return WindowCheckpoint(oldest["windows_done"], oldest["windows_total"], codes, oldest["rng_state"])


def delete(store: Store, job: Job) -> None:
    if store.exists(key(job)):
        store.delete(key(job))
