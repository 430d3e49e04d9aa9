"""Getting a generated clip into the store: spool, then WAV, cost row, `.done`, claim released.

A clip is spooled on the main thread as soon as it exists (it is paid for and must not be lost),
then delivered, on the saver thread for a fresh batch or on the main thread for one an earlier
worker on this host left in the spool. A reader never sees `.done` without the WAV, and a clip
leaves this host's disk only once it is done. A clip already whole in the store is completed
(cost row, `.done`) instead of generated again.
"""

from __future__ import annotations

import io
import time
import traceback

import numpy as np

from musicsweep.costs.rows import CostRow, marginal_cost_usd
from musicsweep.job import Job
from musicsweep.layout import JobPaths, spool_folder
from musicsweep.store.base import json_bytes
from musicsweep.store.retry import StoreUnreachable
from musicsweep.store.verify import stored_wav_problem
from musicsweep.worker import partial
from musicsweep.worker.claims import Claims
from musicsweep.worker.context import WorkerContext
from musicsweep.worker.failures import Failures
from musicsweep.worker.faults import kill_point
from musicsweep.worker.log import log
from musicsweep.worker.spool import Spool, SpooledClip
from musicsweep.worker.tally import Tally
from musicsweep.worker.timing import WorkerTimes


def cost_row(job: Job, spooled: SpooledClip | None, context: WorkerContext) -> CostRow:
    """The clip's row from what its generator measured (kept with the spooled clip); without it
    (a WAV found in the store, its spool entry gone) the time and cost are unknown."""
    generation_time_s = None if spooled is None else spooled.generation_time_s
    cost = None if generation_time_s is None else marginal_cost_usd(generation_time_s, context.hourly_cost_usd)
    return CostRow(
        s3_filename=job.output_name,
        prompt=job.prompt,
        requested_duration_s=job.duration_s,
        generation_time_s=None if generation_time_s is None else round(generation_time_s, 4),
        estimated_cost_usd=cost,
        model=job.model,
        seed=job.seed,
        job_id=job.job_id,
        host=context.host,
        hourly_cost_usd=context.hourly_cost_usd,
        audio_seconds=job.duration_s,
        worker_id=context.worker_id,
        batch_size=1 if spooled is None else spooled.batch_size,
        resumed_from_window=None if spooled is None else spooled.resumed_from_window,
        launch_id=context.launch_id,
        finished_at=round(time.time(), 3),
    )


class Delivery:
    def __init__(
        self, context: WorkerContext, claims: Claims, tally: Tally, failures: Failures, times: WorkerTimes
    ) -> None:
        self.context, self.claims, self.tally, self.failures, self.times = context, claims, tally, failures, times
        self.spool = Spool(spool_folder(context.work_dir))
        self.told_incomplete: set[str] = set()  # clips whose torn object was logged (once each)

    def spool_clip(
        self, job: Job, clip: np.ndarray, sampling_rate: int, share_s: float, batch_size: int, resumed_from: int | None
    ) -> SpooledClip:
        """Spool the WAV as soon as it exists: from here on it is paid for and must not be lost."""
        import soundfile

        buffer = io.BytesIO()
        soundfile.write(buffer, clip, sampling_rate, subtype="PCM_16", format="WAV")
        spooled = self.spool.put(job, buffer.getvalue(), share_s, batch_size, resumed_from)
        log(f"generated {job.output_name}")
        return spooled

    def deliver(self, job: Job, spooled: SpooledClip) -> None:
        """WAV (verified), then cost row, then `.done`; then the spool entry goes, and the claim is released."""
        paths = JobPaths.of(job, self.context.work_dir)
        store = self.context.store
        if not self.claims.still_held(job.job_id):
            log(f"not saving {job.output_name}: another worker took its claim over after our lease ran out")
            self.spool.remove(job)
            return
        with self.times.timing("upload_s"):
            store.put_file(paths.audio_key, spooled.wav)
            log(f"uploaded {job.output_name}")
            kill_point("upload")
            store.put_json(paths.cost_key, cost_row(job, spooled, self.context).to_dict())
            store.put_bytes(paths.done_key, f"{time.time()}\n".encode())
        self.tally.saved.add(job.job_id)  # before the release: a pool round never sees it free and not done
        self.spool.remove(job)
        partial.delete(store, job)
        try:
            self.claims.release(job.job_id, "done")
        except StoreUnreachable:
            raise
        except OSError as error:  # a full store: `.done` is in, so every worker skips the clip anyway
            log(f"cannot release the claim of {job.output_name}, which is saved: {error}")

    def deliver_batch(self, part: list[Job], spooled: list[SpooledClip]) -> None:
        """The saver thread's task: deliver each clip in order. An error fails only the clips not yet
        saved (the saved ones stay done); `StoreUnreachable` escapes to end the worker."""
        failed: list[Job] = []
        try:
            for job, entry in zip(part, spooled, strict=True):
                self.deliver(job, entry)
        except StoreUnreachable:
            raise
        except Exception:  # e.g. an upload failed midway; the clip that raised is never in `saved`
            failed = [job for job in part if job.job_id not in self.tally.saved]
            self.failures.mark_all(failed, traceback.format_exc())
        finished = len(part) - len(failed)
        if finished:
            self.tally.advance(finished, part[0].duration_s * finished)

    def deliver_if_spooled(self, job: Job) -> bool:
        """True if an earlier worker on this host generated the clip: it is uploaded, not generated again."""
        spooled = self.spool.get(job)
        if spooled is None:
            return False
        log(f"uploading {job.output_name} from the spool")
        self.deliver(job, spooled)
        return True

    def finish_if_present(self, job: Job) -> bool:
        """True if the whole WAV is already in the store; completes its cost row and `.done` if missing.

        A WAV whose size differs from its header's, or whose length is not the job's, does not
        count: the clip is generated (or taken from the spool) again and replaces it.
        """
        paths = JobPaths.of(job, self.context.work_dir)
        store = self.context.store
        problem = stored_wav_problem(store, paths.audio_key, job.wav_seconds, job.channels)
        if problem == "missing":
            return False
        if problem is not None:
            if job.job_id not in self.told_incomplete:
                self.told_incomplete.add(job.job_id)
                log(f"replacing {job.output_name}: the stored object is incomplete ({problem})")
            if store.exists(paths.done_key):  # a `.done` over a torn object: the clip is not done
                store.delete(paths.done_key)
            return False
        spooled = self.spool.get(job)  # killed after its upload: the spool still knows its real cost
        if not store.exists(paths.cost_key):
            # Create-only: the real row of a worker that is just finishing this clip must win.
            store.put_new(paths.cost_key, json_bytes(cost_row(job, spooled, self.context).to_dict()))
        if not store.exists(paths.done_key):
            store.put_bytes(paths.done_key, b"recovered\n")
        self.spool.remove(job)
        partial.delete(store, job)
        log(f"skip {job.output_name}: already in the store")
        self.tally.skipped += 1
        return True
