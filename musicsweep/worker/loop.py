"""What runs on a host: `python -m musicsweep.worker SPEC...`.

Loads each model once, generates its jobs in batches grouped by (model, params, duration), and
for each clip writes the WAV, then its cost row, then `.done`, all through the store. Before
generating a clip it claims it (`claims`); a clip another live worker holds is deferred and
waited for, then skipped once done or taken over once that claim expires. A job that raises gets
this attempt's `.failed` with the traceback (headed `permanent failure:` when a retry cannot help,
see `musicsweep.failure`) and the worker moves on. SIGUSR2/SIGTERM ask it to stop
after the current batch (preemption, spot interruption); it then exits with EXIT_STOPPED.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import time
import traceback
from collections import defaultdict
from pathlib import Path

import cloudpickle
import numpy as np

from musicsweep.atomic import atomic_write_text
from musicsweep.costs.rows import CostRow, marginal_cost_usd
from musicsweep.engine.batching import with_backoff
from musicsweep.engine.generate import MusicEngine
from musicsweep.engine.progress import Progress
from musicsweep.failure import failure_text, is_permanent_error
from musicsweep.job import Job
from musicsweep.layout import JobPaths, WorkerPaths
from musicsweep.store.base import Store, json_bytes
from musicsweep.worker.claims import Claim, Claims, owner_of
from musicsweep.worker.context import EXIT_STOPPED, StopFlag, WorkerContext, log
from musicsweep.worker.heartbeat import Heartbeat, heartbeat_interval

# Test hook for the kill test only: "1" makes the worker SIGKILL itself right after its first WAV
# upload, before the cost row and `.done`, so the test can prove a rerun neither loses nor
# regenerates that clip. Never set it outside tests.
KILL_AFTER_UPLOAD_ENV = "MUSICSWEEP_TEST_KILL_AFTER_UPLOAD"


def load_jobs(spec_paths: list[Path]) -> list[Job]:
    jobs = []
    for path in spec_paths:
        with open(path, "rb") as handle:
            jobs.append(cloudpickle.load(handle))
    return jobs


def write_pid_files(jobs: list[Job], work_dir: Path) -> None:
    """`pid pgid` per job: liveness uses the pid, orphan killing the whole process group."""
    line = f"{os.getpid()} {os.getpgid(0)}\n"
    for job in jobs:
        atomic_write_text(JobPaths.of(job, work_dir).pid, line)


def group_jobs(jobs: list[Job]) -> list[list[Job]]:
    """Jobs that can share a generate() call, in first-seen order."""
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        groups[job.group_key].append(job)
    return list(groups.values())


class Worker:
    def __init__(self, context: WorkerContext, stop: StopFlag, claims: Claims) -> None:
        self.context = context
        self.stop = stop
        self.claims = claims
        self.last_progress = time.time()
        self.engines: dict[str, MusicEngine] = {}
        self.sources: dict[str, str] = {}
        self.auto_sizes: dict[str, int] = {}
        self.batch_caps: dict[tuple, int] = {}
        self.progress = Progress(0, 0.0)
        self.model_load_s = 0.0
        self.generation_s = 0.0
        self.failed: list[str] = []
        self.saved: set[str] = set()
        self.skipped = 0

    def engine(self, model: str) -> MusicEngine:
        """Each model is loaded once per process, from the folder cache-ahead fetched it into."""
        if model not in self.engines:
            from musicsweep.engine import load_engine

            started = time.monotonic()
            engine = load_engine(model, self.context.engine_config, self.sources.get(model))
            self.engines[model] = engine
            self.model_load_s += time.monotonic() - started
            loaded = engine.loaded
            log(f"loaded model {model} in {time.monotonic() - started:.1f}s on {loaded.device} ({loaded.dtype})")
        return self.engines[model]

    def cache_ahead(self, jobs: list[Job]) -> list[Job]:
        """Fetch every model before the first clip; the jobs of a model that cannot be fetched fail at once."""
        from musicsweep.engine.cacheahead import cache_ahead

        self.sources, errors = cache_ahead([job.model for job in jobs], self.context.engine_config.hf_home)
        for error in errors.values():
            log(f"cache-ahead: {error}")
        for job in jobs:
            if job.model in errors:
                if not self.finish_if_present(job):
                    self.mark_failed(job, errors[job.model] + "\n", permanent=True)
                self.advance(1, job.duration_s, generated=False)
        return [job for job in jobs if job.model not in errors]

    def advance(self, clips: int, audio_s: float, generated: bool = True) -> None:
        """Count finished clips; the heartbeat reports the time of the last one (the stall watchdog)."""
        self.last_progress = time.time()
        log(self.progress.advance(clips, audio_s, generated=generated))

    def finish_if_present(self, job: Job) -> bool:
        """True if the WAV is already in the store; completes its cost row and `.done` if missing."""
        paths = JobPaths.of(job, self.context.work_dir)
        store = self.context.store
        if not store.exists(paths.audio_key):
            return False
        if not store.exists(paths.cost_key):
            # Create-only: the real row of a worker that is just finishing this clip must win.
            row = self.cost_row(job, generation_time_s=None, batch_size=1)
            store.put_new(paths.cost_key, json_bytes(row.to_dict()))
        if not store.exists(paths.done_key):
            store.put_bytes(paths.done_key, b"recovered\n")
        log(f"skip {job.output_name}: already in the store")
        self.skipped += 1
        return True

    def claim(self, job: Job) -> Claim | None:
        """Claim a clip (any launch's other live claim wins); returns that claim when it does."""
        other = self.claims.acquire(job.job_id)
        if other is not None:
            owner = other.owner
            until = time.strftime("%H:%M:%S", time.localtime(other.expires))
            log(f"wait for {job.output_name}: claimed by {owner.host} pid {owner.pid} ({owner.launch}) until {until}")
            return other
        if self.context.store.exists(JobPaths.of(job, self.context.work_dir).done_key):
            self.claims.release(job.job_id)  # finished by its previous owner just before we took over
        return None

    def cost_row(self, job: Job, generation_time_s: float | None, batch_size: int) -> CostRow:
        cost = None if generation_time_s is None else marginal_cost_usd(generation_time_s, self.context.hourly_cost_usd)
        return CostRow(
            s3_filename=job.output_name,
            prompt=job.prompt,
            requested_duration_s=job.duration_s,
            generation_time_s=None if generation_time_s is None else round(generation_time_s, 4),
            estimated_cost_usd=cost,
            model=job.model,
            seed=job.seed,
            job_id=job.job_id,
            host=self.context.host,
            hourly_cost_usd=self.context.hourly_cost_usd,
            audio_seconds=job.duration_s,
            worker_id=self.context.worker_id,
            batch_size=batch_size,
        )

    def save(self, job: Job, clip: np.ndarray, sampling_rate: int, share_s: float, batch_size: int) -> None:
        """WAV, then cost row, then `.done`: a reader never sees `.done` without the WAV."""
        import soundfile

        paths = JobPaths.of(job, self.context.work_dir)
        if not self.claims.still_held(job.job_id):
            log(f"not saving {job.output_name}: another worker took its claim over after our lease ran out")
            return
        buffer = io.BytesIO()
        soundfile.write(buffer, clip, sampling_rate, subtype="PCM_16", format="WAV")
        staging = self.context.work_dir / "staging" / job.output_name
        staging.parent.mkdir(parents=True, exist_ok=True)
        staging.write_bytes(buffer.getvalue())
        try:
            self.context.store.put_file(paths.audio_key, staging)
        finally:
            staging.unlink(missing_ok=True)
        log(f"uploaded {job.output_name}")
        if os.environ.get(KILL_AFTER_UPLOAD_ENV) == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        self.context.store.put_json(paths.cost_key, self.cost_row(job, share_s, batch_size).to_dict())
        self.context.store.put_bytes(paths.done_key, f"{time.time()}\n".encode())
        self.claims.release(job.job_id)
        self.saved.add(job.job_id)

    def mark_failed(self, job: Job, error_text: str, permanent: bool = False) -> None:
        """This attempt's `.failed`; the claim is released, so a relaunch need not wait out the lease."""
        paths = JobPaths.of(job, self.context.work_dir)
        text = failure_text(error_text, permanent)
        self.context.store.put_bytes(paths.failed_key(self.context.launch_id), text.encode())
        self.claims.release(job.job_id)
        self.failed.append(job.job_id)
        log(f"FAILED {job.output_name}: {text.strip().splitlines()[0 if permanent else -1]}")

    def run_batch(self, batch: list[Job]) -> None:
        """Generate and save one batch; a failed batch is retried in halves down to single clips."""
        first = batch[0]
        engine = self.engine(first.model)
        self.progress.begin()

        def attempt(part: list[Job]) -> tuple[list[np.ndarray], float]:
            started = time.monotonic()
            clips = engine.generate([j.prompt for j in part], [j.seed for j in part], first.duration_s, first.params)
            return clips, time.monotonic() - started

        def on_retry(failed_size: int, next_size: int, reason: str) -> None:
            self.batch_caps[first.group_key] = min(self.batch_caps.get(first.group_key, failed_size), next_size)
            log(f"batch of {failed_size} failed ({reason}); retrying in batches of {next_size}")

        for part, result, error_text in with_backoff(batch, attempt, on_retry):
            if result is None:
                self.mark_failed(part[0], error_text or "", permanent=is_permanent_error(error_text or ""))
                self.advance(1, first.duration_s, generated=False)
                continue
            clips, elapsed = result
            self.generation_s += elapsed
            for job, clip in zip(part, clips, strict=True):
                self.save(job, clip, engine.sampling_rate, elapsed / len(part), len(part))
            audio = first.duration_s * len(part)
            log(f"batch of {len(part)} x {first.duration_s:g}s in {elapsed:.1f}s ({audio / elapsed:.2f} audio s/s)")
            self.advance(len(part), audio)

    def run(self, jobs: list[Job]) -> int:
        self.progress = Progress(len(jobs), sum(job.duration_s for job in jobs))
        deferred = self.generate(self.cache_ahead(jobs))
        while deferred and not self.stop.requested:
            self.stop.event.wait(heartbeat_interval(self.claims.lease_s))
            deferred = self.generate(deferred)
        if self.stop.requested:
            return EXIT_STOPPED
        return 1 if self.failed else 0

    def generate(self, jobs: list[Job]) -> list[Job]:
        """Generate every job this worker can claim; returns those another live worker holds."""
        deferred: list[Job] = []
        for group in group_jobs(jobs):
            pending = list(group)
            while pending:
                if self.stop.requested:
                    log(f"stopped early: {len(pending)} clip(s) of this group left for a relaunch")
                    return deferred
                try:
                    size = self.batch_size(group[0])
                except Exception:  # the model failed to load: its whole group fails now, not batch by batch
                    self.fail_all(pending, traceback.format_exc(), permanent=True)
                    break
                taken, pending = pending[:size], pending[size:]
                batch = self.claim_batch(taken, deferred)
                if batch:
                    self.run_claimed(batch)
        return deferred

    def claim_batch(self, taken: list[Job], deferred: list[Job]) -> list[Job]:
        """The jobs of `taken` to generate now; others' live claims go to `deferred`, finished ones are counted."""
        batch = []
        for job in taken:
            if self.finish_if_present(job):
                self.advance(1, job.duration_s, generated=False)
                continue
            other = self.claim(job)
            if other is not None:
                deferred.append(job)
                self.last_progress = max(self.last_progress, other.expires - self.claims.lease_s)
            elif job.job_id in self.claims.held:
                batch.append(job)
            else:  # done by the previous owner meanwhile
                self.finish_if_present(job)
                self.advance(1, job.duration_s, generated=False)
        return batch

    def run_claimed(self, batch: list[Job]) -> None:
        try:
            self.run_batch(batch)
        except Exception:  # e.g. an upload failed midway: clips already saved stay done
            unsaved = [job for job in batch if job.job_id not in self.saved]
            if unsaved:
                self.fail_all(unsaved, traceback.format_exc())

    def fail_all(self, jobs: list[Job], error_text: str, permanent: bool = False) -> None:
        for job in jobs:
            self.mark_failed(job, error_text, permanent)
        self.advance(len(jobs), jobs[0].duration_s * len(jobs), generated=False)

    def lifetime(self, started: float, finished: bool) -> dict:
        """This process's life so far (epoch seconds), for the sweep's paid-versus-marginal summary."""
        context = self.context
        return {
            "launch_id": context.launch_id,
            "worker_id": context.worker_id,
            "host": context.host,
            "start": started,
            "end": time.time(),
            "hourly_cost_usd": context.hourly_cost_usd,
            "model_load_s": round(self.model_load_s, 3),
            "generation_s": round(self.generation_s, 3),
            "clips": len(self.saved),
            "finished": finished,
        }

    def batch_size(self, job: Job) -> int:
        """The configured size or `auto` (engine.batching), never above what back-off shrank this group to."""
        configured = self.context.engine_config.batch_size
        if isinstance(configured, int):
            size = configured
        else:
            if job.model not in self.auto_sizes:
                self.auto_sizes[job.model] = self.engine(job.model).auto_batch_size()
                log(f"batch_size auto: {self.auto_sizes[job.model]} for {job.model}")
            size = self.auto_sizes[job.model]
        return min(size, self.batch_caps.get(job.group_key, size))


def upload_log(store: Store, paths: WorkerPaths) -> None:
    """Copy the log into an off-host store, since a cloud host may be gone when auto_pull looks."""
    if store.local_path(paths.log_key) is None and paths.log.exists():
        try:
            store.put_file(paths.log_key, paths.log)
        except Exception as error:  # the results are already safe; a lost log must not fail the worker
            log(f"log upload failed: {error}")


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(description="Generate the clips of the given job spec files.")
    parser.add_argument("specs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    context = WorkerContext.from_env(dict(os.environ))
    stop = StopFlag()
    stop.install()
    jobs = load_jobs(args.specs)
    write_pid_files(jobs, context.work_dir)
    owner = owner_of(context.host, context.launch_id, context.worker_id)
    claims = Claims(context.store, jobs[0].sweep, owner, context.lease_s)
    worker = Worker(context, stop, claims)
    worker_paths = WorkerPaths(context.work_dir, jobs[0].sweep, context.worker_id)
    lifetime = lambda: worker.lifetime(started, finished=False)  # noqa: E731
    heartbeat = Heartbeat(context, worker_paths, lifetime, claims, lambda: worker.last_progress)
    heartbeat.start()
    log(f"worker {context.worker_id}/{context.num_workers} on {context.host}: {len(jobs)} job(s)")
    try:
        status = worker.run(jobs)
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=30)
    context.store.put_json(worker_paths.lifetime_key(context.launch_id), worker.lifetime(started, finished=True))
    log(f"worker finished with status {status}")
    upload_log(context.store, worker_paths)
    return status
