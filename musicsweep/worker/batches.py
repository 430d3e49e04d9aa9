"""One batch through the GPU: generated (resumed from its checkpoint, if any), checkpointed after
each window, its clips spooled and their delivery handed to the saver thread."""

from __future__ import annotations

import functools
import time

import numpy as np

from musicsweep.engine.batching import with_backoff
from musicsweep.engine.checkpoint import StopAtWindow, WindowCheckpoint
from musicsweep.failure import is_permanent_error
from musicsweep.job import Job
from musicsweep.worker import partial
from musicsweep.worker.context import StopFlag, WorkerContext
from musicsweep.worker.delivery import Delivery
from musicsweep.worker.failures import Failures
from musicsweep.worker.faults import kill_point
from musicsweep.worker.inputs import InputCache
from musicsweep.worker.lifetime import Lifetime
from musicsweep.worker.log import log
from musicsweep.worker.models import ModelCache
from musicsweep.worker.saver import Saver
from musicsweep.worker.sizing import BatchSizer
from musicsweep.worker.tally import Tally


class BatchRunner:
    def __init__(
        self,
        context: WorkerContext,
        stop: StopFlag,
        models: ModelCache,
        sizer: BatchSizer,
        lifetime: Lifetime,
        tally: Tally,
        failures: Failures,
        delivery: Delivery,
        saver: Saver,
    ) -> None:
        self.context, self.stop, self.models, self.sizer = context, stop, models, sizer
        self.lifetime, self.tally, self.failures, self.delivery, self.saver = lifetime, tally, failures, delivery, saver
        self.inputs = InputCache(context.store)  # melodies and audio prompts, read once each

    def run(self, batch: list[Job]) -> None:
        """Generate and save one batch; a failed batch is retried in halves down to single clips."""
        first = batch[0]
        engine = self.models.engine(first.model)
        self.tally.progress.begin()
        log(f"generating {len(batch)} clip(s) of {first.duration_s:g}s")

        def attempt(part: list[Job]) -> tuple[list[np.ndarray], float, partial.Resume | None]:
            started = time.monotonic()
            resume = partial.load(self.context.store, part)
            checkpoint = resume.checkpoint if resume else None
            if checkpoint is not None:
                log(f"resuming {len(part)} clip(s) after window {checkpoint.windows_done}/{checkpoint.windows_total}")
            prompts, seeds = [j.prompt for j in part], [j.seed for j in part]
            on_window = functools.partial(self.window_done, part, partial.paid_before(resume, part), started)
            inputs = self.inputs.for_batch(part)
            clips = engine.generate(prompts, seeds, first.duration_s, first.params, checkpoint, on_window, inputs)
            kill_point("generate")
            return clips, time.monotonic() - started, resume

        def on_retry(failed_size: int, next_size: int, reason: str) -> None:
            self.sizer.shrink(first.group_key, failed_size, next_size)
            log(f"batch of {failed_size} failed ({reason}); retrying in batches of {next_size}")

        times = self.lifetime.times
        for part, result, error_text in with_backoff(batch, attempt, on_retry):
            if result is None:
                self.failures.mark(part[0], error_text or "", permanent=is_permanent_error(error_text or ""))
                self.tally.advance(1, first.duration_s, generated=False)
                continue
            clips, elapsed, resume = result
            self.lifetime.generation_s += elapsed
            self.tally.observe(first.duration_s * len(part), elapsed)
            if resume is None:  # a resumed batch's time is not a whole batch's: kept out of the calibration
                times.batch(first.model, len(part), first.duration_s, first.params.extend_stride_s, elapsed)
            resumed_from = None if resume is None else resume.checkpoint.windows_done
            spooled = [
                self.delivery.spool_clip(
                    job, clip, engine.sampling_rate, paid + elapsed / len(part), len(part), resumed_from
                )
                for job, clip, paid in zip(part, clips, partial.paid_before(resume, part), strict=True)
            ]
            audio = first.duration_s * len(part)
            log(f"batch of {len(part)} x {first.duration_s:g}s in {elapsed:.1f}s ({audio / elapsed:.2f} audio s/s)")
            self.saver.submit(functools.partial(self.delivery.deliver_batch, part, spooled))

    def window_done(self, batch: list[Job], paid_s: list[float], started: float, checkpoint: WindowCheckpoint) -> None:
        """Checkpoint a long batch after each window but its last, with what each clip has cost since
        `started` on top of `paid_s` (earlier attempts); stop here if asked (SIGTERM/SIGUSR2)."""
        self.tally.touch()
        log(f"window {checkpoint.windows_done}/{checkpoint.windows_total} of {len(batch)} clip(s)")
        if checkpoint.windows_done == checkpoint.windows_total:
            return  # the clips themselves follow at once
        share_s = (time.monotonic() - started) / len(batch)
        with self.lifetime.times.timing("upload_s"):
            partial.save(self.context.store, batch, checkpoint, [paid + share_s for paid in paid_s])
        kill_point(f"window{checkpoint.windows_done}")
        if self.stop.requested:
            log(f"stopping after window {checkpoint.windows_done}/{checkpoint.windows_total}: checkpoint saved")
            raise StopAtWindow
