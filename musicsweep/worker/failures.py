"""A clip's `.failed` for this attempt: written, counted, and its claim released."""

from __future__ import annotations

from musicsweep.failure import failure_text
from musicsweep.job import Job
from musicsweep.layout import JobPaths
from musicsweep.store.retry import StoreUnreachable
from musicsweep.worker.claims import Claims
from musicsweep.worker.context import WorkerContext
from musicsweep.worker.log import log
from musicsweep.worker.tally import Tally


class Failures:
    def __init__(self, context: WorkerContext, claims: Claims, tally: Tally) -> None:
        self.context, self.claims, self.tally = context, claims, tally

    def mark(self, job: Job, error_text: str, permanent: bool = False) -> None:
        """The claim is released, so a relaunch need not wait out the lease (`permanent`: see `musicsweep.failure`)."""
        text = failure_text(error_text, permanent)
        log(f"FAILED {job.output_name}: {text.strip().splitlines()[0 if permanent else -1]}")
        paths = JobPaths.of(job, self.context.work_dir)
        self.write(paths.failed_key(self.context.launch_id), job.job_id, text)
        self.claims.release(job.job_id, "failed")

    def mark_all(self, jobs: list[Job], error_text: str, permanent: bool = False) -> None:
        for job in jobs:
            self.mark(job, error_text, permanent)
        self.tally.advance(len(jobs), jobs[0].duration_s * len(jobs), generated=False)

    def write(self, failed_key: str, job_id: str, error_text: str) -> None:
        self.tally.failed.append(job_id)
        try:
            self.context.store.put_bytes(failed_key, error_text.encode())
        except StoreUnreachable:
            raise
        except Exception as error:  # e.g. a full disk: the log and the exit status still tell
            log(f"could not write {failed_key}: {error}")
