"""Turn variants into jobs and plan them against the store: what runs where, what is skipped, the cost.

`sweep.launch` launches a plan."""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicsweep.backends import BACKEND_NAMES, get_backend, unknown_backend
from musicsweep.backends.base import Backend, Shard
from musicsweep.config import Config, check_store_url, load_config
from musicsweep.costs.estimate import Estimate, estimate_for
from musicsweep.errors import MusicsweepError
from musicsweep.job import DEFAULT_MODEL, MAX_DURATION_S, Job
from musicsweep.layout import AUDIO_DIR, SweepDir
from musicsweep.manifest import Manifest
from musicsweep.models import model_traits
from musicsweep.states import JobState
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.verify import expected_wav_size
from musicsweep.sweep.inputs import check_inputs, read_inputs
from musicsweep.sweep.prompts import ROW_KEY, PromptRow
from musicsweep.sweep.variants import NAME_KEY, canonical_json

_SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def variant_where(index: int, variant: dict[str, Any]) -> str:
    """`variant 3 (name)` in errors, headed by `prompts.txt:LINE: ` for a variant read from a prompts file."""
    where = f"variant {index} ({variant.get(NAME_KEY, '')})".replace(" ()", "")
    row = variant.get(ROW_KEY)
    return f"{row.where}: {where}" if isinstance(row, PromptRow) else where


def jobs_from_variants(
    variants: list[dict[str, Any]], sweep: str, max_duration_s: float = MAX_DURATION_S, base_dir: Path | None = None
) -> list[Job]:
    """Validate every variant and build its job; two jobs with one output name are an error.

    Keys a VariantGenerator added with hide=True (`Variant.metadata_keys`) may be anything. The
    paths of `melody` and `audio_prompt` are read relative to `base_dir` (default: the current folder).
    """
    if not _SWEEP_NAME.match(sweep):
        raise MusicsweepError(f"sweep name {sweep!r}: use letters, digits, '_', '.' and '-' only")
    jobs: list[Job] = []
    seen: dict[str, str] = {}
    ids: dict[str, tuple[str, str]] = {}
    base_dir = base_dir or Path.cwd()
    channels_of: dict[str, int] = {}  # per model name: a local model's traits are read from its folder
    for index, variant in enumerate(variants):
        where = variant_where(index, variant)
        values = {k: v for k, v in variant.items() if k != NAME_KEY}
        canonical_json(values, where)  # the manifest stores it as JSON: a key JSON cannot write fails here
        inputs = read_inputs(values, base_dir, where)
        metadata_keys = getattr(variant, "metadata_keys", frozenset())
        model = str(values.get("model", DEFAULT_MODEL))
        if model not in channels_of:
            channels_of[model] = model_traits(model).channels
        channels = channels_of[model]
        job = Job.from_variant(values, sweep, where, max_duration_s, metadata_keys, inputs, channels)
        check_inputs(job, where)
        if job.output_name in seen:
            raise MusicsweepError(
                f"{where}: duplicate output name {job.output_name!r} (same as {seen[job.output_name]})"
            )
        other = ids.get(job.job_id)
        if other is not None and other[1] != job.audio_content:
            raise MusicsweepError(f"{where}: job id {job.job_id} collides with {other[0]} (different audio)")
        seen[job.output_name] = where
        ids[job.job_id] = (where, job.audio_content)
        jobs.append(job)
    if not jobs:
        raise MusicsweepError(f"sweep {sweep!r}: no variants to run")
    return jobs


@dataclass
class Plan:
    """What a launch will do: which jobs run where, which the store already has, and the cost."""

    sweep: SweepDir
    jobs: list[Job]
    skipped: list[Job]
    running: list[Job]
    shards: list[Shard]
    backend: Backend
    estimate_s: float = 0.0
    estimate_usd: float = 0.0
    store_url: str = ""
    notes: list[str] = field(default_factory=list)
    job_estimate_s: dict[str, float] = field(default_factory=dict)
    estimate: Estimate | None = None  # per worker and part, with each figure's source
    seen_launches: tuple[str, ...] = ()  # the manifest's launches when this plan was made

    @property
    def to_run(self) -> list[Job]:
        return [job for shard in self.shards for job in shard.jobs]


def finished_in_store(store: Store, jobs: list[Job], sweep: SweepDir) -> set[str]:
    """Job ids whose whole WAV (by its size) and `.done` are in the store: one listing of the sweep's
    audio and one of its markers (not of its specs, cost rows and claims, as many again).

    A WAV of another size is partial (or from elsewhere): its job runs, and the worker replaces it.
    """
    keys = sweep.keys
    listed = store.list(keys.folder(AUDIO_DIR)) | store.list(keys.markers)
    finished = set()
    for job in jobs:
        audio = listed.get(keys.audio(job.output_name))
        whole = audio is not None and audio.size == expected_wav_size(job.wav_seconds, job.channels)
        if whole and keys.done(job.job_id) in listed:
            finished.add(job.job_id)
    return finished


BUSY_STATES = (JobState.RUNNING, JobState.PENDING, JobState.STALLED)


def running_jobs(backend: Backend, sweep: SweepDir, manifest: Manifest | None, config: Config) -> set[str]:
    """Jobs an earlier launch of this sweep is still generating or has queued (a SLURM task waiting
    for a node, an instance booting), whose lost worker's lease is still live, or whose fresh claim
    another worker holds (it took the clip over: `observe` says running): never start them twice.
    Read-only (a dry run calls it too)."""
    if manifest is None:
        return set()
    from musicsweep.sweep.observe import observe

    seen = observe(sweep, manifest, backend, config)
    now = time.time()
    return {
        job_id
        for job_id, state in seen.states.items()
        if state in BUSY_STATES or (state == JobState.LOST and not seen.lease_expired(job_id, now))
    }


def make_plan(jobs: list[Job], config: Config, sweep_name: str, dry_run: bool = False) -> Plan:
    backend = get_backend(config.backend, config)
    backend.validate(dry_run=dry_run)
    store = open_store(config.store)
    if not dry_run:  # the check writes (a folder, a probe object); a dry run writes nothing
        store.check()
    sweep = SweepDir(config.sweeps_dir, sweep_name)
    manifest = sweep.read_manifest_if_any()
    finished = finished_in_store(store, jobs, sweep)
    busy = running_jobs(backend, sweep, manifest, config)
    skipped = [job for job in jobs if job.job_id in finished]
    running = [job for job in jobs if job.job_id in busy and job.job_id not in finished]
    pending = [job for job in jobs if job.job_id not in finished and job.job_id not in busy]
    shards = backend.shard(pending) if pending else []
    plan = Plan(sweep, jobs, skipped, running, shards, backend, store_url=config.store.url)
    plan.seen_launches = manifest.launch_ids() if manifest else ()
    if shards:
        plan.estimate = estimate_for(config, backend.name, backend.billing, shards, store)
        plan.job_estimate_s = plan.estimate.job_s
        plan.estimate_s, plan.estimate_usd = plan.estimate.wall_s, plan.estimate.paid_usd
    return plan


def resolve_config(config: Config | None, backend: str | None, store: str | None) -> Config:
    config = config or load_config()
    if backend is not None:
        config = config.with_overrides(backend=backend)
        if backend not in BACKEND_NAMES:
            raise unknown_backend(backend, f"backend {backend!r}")
    if store is not None:
        check_store_url(store, "store")
        url = store if store.startswith("s3://") else str(Path(store).resolve())
        config = config.with_overrides(store=dataclasses.replace(config.store, url=url))
    return config
