"""Window checkpoints in the store: one object per clip, `{sweep}/partial/{job_id}.codes`.

Each object holds that clip's codes (int16: about 400 bytes per second of audio), its window and
the generation seconds paid for it so far. A clip with a checkpoint resumes after its last complete
window in whatever batch it is in next, bit for bit as if uninterrupted: each clip draws from its
own random stream, keyed by its seed and window (`engine.streams`), so no generator state is kept.
`resume_groups` splits a batch so that each part shares one resume point. Each write is a single
create-or-replace `put_bytes`, so a reader sees a whole checkpoint or the previous one; one of
another job id or format is stale and ignored.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from musicsweep.engine.checkpoint import WindowCheckpoint
from musicsweep.engine.longform import WINDOW_S
from musicsweep.job import Job
from musicsweep.layout import JobPaths
from musicsweep.store.base import Store

FORMAT = 3


@dataclass(frozen=True)
class Resume:
    """Where a part of a batch continues, and the generation seconds each clip has cost so far."""

    checkpoint: WindowCheckpoint
    paid_s: list[float]


def key(job: Job) -> str:
    return JobPaths(".", job.sweep, job.job_id, job.output_name).partial_key


def encode(job: Job, index: int, checkpoint: WindowCheckpoint, paid_s: float) -> bytes:
    """Clip `index` of the checkpointed batch, which is `job`."""
    import torch

    payload = {
        "format": FORMAT,
        "job_id": job.job_id,
        "windows_done": checkpoint.windows_done,
        "windows_total": checkpoint.windows_total,
        "codes": checkpoint.codes[index].to(torch.int16),  # codes < 2048 (the codebook size)
        "paid_s": paid_s,
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


def save(store: Store, batch: list[Job], checkpoint: WindowCheckpoint, paid_s: list[float]) -> None:
    for index, job in enumerate(batch):
        store.put_bytes(key(job), encode(job, index, checkpoint, paid_s[index]))


def read(store: Store, jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """The readable checkpoints of `jobs` by job id, from one listing (clips of one window have none)."""
    if not jobs or jobs[0].duration_s <= WINDOW_S:
        return {}
    present = store.list(key(jobs[0]).rsplit("/", 1)[0] + "/")
    payloads = {}
    for job in jobs:
        payload = decode(store.get_bytes(key(job))) if key(job) in present else None
        if payload is not None and payload["job_id"] == job.job_id:
            payloads[job.job_id] = payload
    return payloads


def point(payload: dict[str, Any] | None) -> tuple[int, int, int] | None:
    """A checkpoint's resume point: clips at the same one can continue in one batch."""
    if payload is None:
        return None
    return payload["windows_done"], payload["windows_total"], payload["codes"].shape[-1]


def resume_groups(store: Store, batch: list[Job]) -> list[list[Job]]:
    """`batch` split so each part resumes from one point: by window, those without a checkpoint last."""
    payloads = read(store, batch)
    by_point: dict[tuple[int, int, int] | None, list[Job]] = {}
    for job in batch:
        by_point.setdefault(point(payloads.get(job.job_id)), []).append(job)
    fresh = by_point.pop(None, [])
    return list(by_point.values()) + ([fresh] if fresh else [])


def load(store: Store, part: list[Job]) -> Resume | None:
    """Where `part` resumes, if every clip has a checkpoint of its windows: after the oldest."""
    import torch

    payloads = read(store, part)
    if len(payloads) < len(part):
        return None
    ordered = [payloads[job.job_id] for job in part]
    # Clips a window ahead of others (killed between two clips' writes, or a part cut from a batch
    # that mixes windows) are cut back to the oldest window: their codes up to it are theirs, and
    # their own streams draw the cut windows again as they drew them.
    oldest = min(ordered, key=lambda p: p["windows_done"])
    if any(p["windows_total"] != oldest["windows_total"] for p in ordered):
        return None
    frames = oldest["codes"].shape[-1]
    codes = torch.stack([p["codes"][:, :frames].long() for p in ordered])
    checkpoint = WindowCheckpoint(oldest["windows_done"], oldest["windows_total"], codes)
    return Resume(checkpoint, [float(p["paid_s"]) for p in ordered])


def paid_before(resume: Resume | None, part: list[Job]) -> list[float]:
    """The generation seconds each clip of `part` cost before this attempt: none unless it resumes."""
    return resume.paid_s if resume else [0.0] * len(part)


def delete(store: Store, job: Job) -> None:
    if store.exists(key(job)):
        store.delete(key(job))
