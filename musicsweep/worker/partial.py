"""Window checkpoints in the store: one object per clip, `{sweep}/partial/{job_id}.codes`.

Each object holds that clip's codes (int16: about 400 bytes per second of audio), its window, the
generation seconds paid for it so far, the batch's RNG state and the batch's composition (its job
ids in order). A clip with a checkpoint resumes after its last complete window in whatever batch
it is in next. `resume_groups` splits a batch so that each part shares one resume point; a part
of exactly the checkpointed composition restores the RNG state and continues the stream bit for
bit, any other part continues its clips' codes with a fresh RNG stream (a valid continuation,
reproducible as well). Each write is a single create-or-replace `put_bytes`, so a reader sees a
whole checkpoint or the previous one; one of another job id or format is stale and ignored.
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

FORMAT = 2


@dataclass(frozen=True)
class Resume:
    """Where a part of a batch continues, and the generation seconds each clip has cost so far."""

    checkpoint: WindowCheckpoint
    paid_s: list[float]
    same_batch: bool  # the checkpointed composition: the RNG stream continues bit for bit


def key(job: Job) -> str:
    return JobPaths(".", job.sweep, job.job_id, job.output_name).partial_key


def encode(batch: list[Job], index: int, checkpoint: WindowCheckpoint, paid_s: float) -> bytes:
    import torch

    payload = {
        "format": FORMAT,
        "batch": [job.job_id for job in batch],
        "index": index,
        "windows_done": checkpoint.windows_done,
        "windows_total": checkpoint.windows_total,
        "codes": checkpoint.codes[index].to(torch.int16),  # codes < 2048 (the codebook size)
        "rng_state": checkpoint.rng_state,
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
        store.put_bytes(key(job), encode(batch, index, checkpoint, paid_s[index]))


def read(store: Store, jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """The readable checkpoints of `jobs` by job id, from one listing (clips of one window have none)."""
    if not jobs or jobs[0].duration_s <= WINDOW_S:
        return {}
    present = store.list(key(jobs[0]).rsplit("/", 1)[0] + "/")
    payloads = {}
    for job in jobs:
        payload = decode(store.get_bytes(key(job))) if key(job) in present else None
        if payload is not None and payload["batch"][payload["index"]] == job.job_id:
            payloads[job.job_id] = payload
    return payloads


def point(payload: dict[str, Any] | None) -> tuple[int, int, int] | None:
    """A checkpoint's resume point: clips at the same one can continue in one batch."""
    if payload is None:
        return None
    return payload["windows_done"], payload["windows_total"], payload["codes"].shape[-1]


def is_checkpointed_batch(jobs: list[Job], payloads: dict[str, dict[str, Any]]) -> bool:
    """Whether `jobs` are exactly one checkpointed batch, in its order."""
    ids = [job.job_id for job in jobs]
    return all(job.job_id in payloads and payloads[job.job_id]["batch"] == ids for job in jobs)


def resume_groups(store: Store, batch: list[Job]) -> list[list[Job]]:
    """`batch` split so each part resumes from one point: whole checkpointed batches first (they
    continue bit for bit), then the other clips by window, those without a checkpoint last."""
    payloads = read(store, batch)
    ids = {job.job_id: job for job in batch}
    groups: list[list[Job]] = []
    for job in batch:
        origin = payloads.get(job.job_id, {}).get("batch", [])
        members = [ids[i] for i in origin if i in ids]
        if members and members[0] is job and is_checkpointed_batch(members, payloads):
            groups.append(members)
    taken = {job.job_id for group in groups for job in group}
    by_point: dict[tuple[int, int, int] | None, list[Job]] = {}
    for job in batch:
        if job.job_id not in taken:
            by_point.setdefault(point(payloads.get(job.job_id)), []).append(job)
    fresh = by_point.pop(None, [])
    return groups + list(by_point.values()) + ([fresh] if fresh else [])


def load(store: Store, part: list[Job]) -> Resume | None:
    """Where `part` resumes, if every clip has a checkpoint of its windows: after the oldest."""
    import torch

    payloads = read(store, part)
    if len(payloads) < len(part):
        return None
    ordered = [payloads[job.job_id] for job in part]
    # Clips a window ahead of others (killed between two clips' writes, or a part cut from a batch
    # that mixes windows) are cut back to the oldest window: their codes up to it are theirs.
    oldest = min(ordered, key=lambda p: p["windows_done"])
    if any(p["windows_total"] != oldest["windows_total"] for p in ordered):
        return None
    frames = oldest["codes"].shape[-1]
    codes = torch.stack([p["codes"][:, :frames].long() for p in ordered])
    exact = is_checkpointed_batch(part, payloads)
    rng_state = oldest["rng_state"] if exact else None
    checkpoint = WindowCheckpoint(oldest["windows_done"], oldest["windows_total"], codes, rng_state)
    return Resume(checkpoint, [float(p["paid_s"]) for p in ordered], exact)


def paid_before(resume: Resume | None, part: list[Job]) -> list[float]:
    """The generation seconds each clip of `part` cost before this attempt: none unless it resumes."""
    return resume.paid_s if resume else [0.0] * len(part)


def delete(store: Store, job: Job) -> None:
    if store.exists(key(job)):
        store.delete(key(job))
