"""What runs on a host: `python -m musicsweep.worker SPEC...`.

Loads each model once, generates its jobs in batches grouped by (model, params, duration), and
for each clip writes the WAV, then its cost row, then `.done`, all through the store. Before
generating a clip it claims it (`claims`); a clip another live worker holds is deferred and
waited for, then skipped once done or taken over once that claim expires. A job that raises gets
this attempt's `.failed` with the traceback (headed `permanent failure:` when a retry cannot help,
see `musicsweep.failure`) and the worker moves on. A long clip's batch is checkpointed after each
continuation window (`worker.partial`) and a later launch resumes it from there, in whatever batch
its clips are then (a batch is split by resume point); a resumed clip's cost row counts the
generation seconds of every attempt that checkpointed it. SIGUSR2/SIGTERM
ask it to stop at the next window boundary, checkpoint saved (preemption, spot interruption); it
then exits with EXIT_STOPPED.
Every store call rides out outages within `store.outage_budget_s` (`store.retry`); past it the
worker exits with EXIT_STORE_UNREACHABLE, marking nothing, and its generated clips wait in the
spool (`worker.spool`) for the next worker on this host to upload.

Saving is pipelined: the main thread spools each generated clip (WAV encoding and a local write,
milliseconds), then hands the batch's delivery (upload, cost row, `.done`, claim release) to the
saver thread (`worker.saver`) and goes on to claim and generate the next batch. Spooling stays on
the main thread so that a clip is on disk before anything else can happen to it: a fatal store
error, a stop or a failed saver finds every generated clip spooled, and the saver never has to
spool while refusing to upload. At most one batch waits behind the one being delivered, so a slow
store holds generation back instead of piling up clips. A saver error fails only that batch's
clips not yet saved; `StoreUnreachable` there ends the worker exactly as on the main thread. The
worker waits for the saver before it releases or fails a stopped or failed batch's unsaved clips
(`run_claimed`) and before `run` returns, so the exit status and lifetime record count every
delivery.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import threading
import time
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np

from musicsweep.atomic import atomic_write_text
from musicsweep.costs.rows import CostRow, marginal_cost_usd
from musicsweep.engine.batching import with_backoff
from musicsweep.engine.checkpoint import StopAtWindow, WindowCheckpoint
from musicsweep.engine.generate import MusicEngine
from musicsweep.engine.progress import Progress
from musicsweep.failure import failure_text, is_permanent_error
from musicsweep.job import Job
from musicsweep.layout import JobPaths, WorkerPaths
from musicsweep.store.base import Store, json_bytes
from musicsweep.store.retry import StoreUnreachable, direct
from musicsweep.store.verify import stored_wav_problem
from musicsweep.worker import partial
from musicsweep.worker.claims import Claim, Claims, owner_of
from musicsweep.worker.context import EXIT_STOPPED, EXIT_STORE_UNREACHABLE, StopFlag, WorkerContext, log
from musicsweep.worker.faults import KILL_AFTER_UPLOAD_ENV, kill_point
from musicsweep.worker.heartbeat import Heartbeat, heartbeat_interval
from musicsweep.worker.inputs import InputCache
from musicsweep.worker.saver import Saver
from musicsweep.worker.specs import LoadedSpecs, load_specs
from musicsweep.worker.spool import Spool, SpooledClip
from musicsweep.worker.timing import WorkerTimes

__all__ = ["EXIT_STOPPED", "EXIT_STORE_UNREACHABLE", "KILL_AFTER_UPLOAD_ENV", "main"]


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
        self.times = WorkerTimes()  # the calibration's breakdown (costs/calibration.py)
        self.failed: list[str] = []
        self.saved: set[str] = set()
        self.skipped = 0
        self.spool = Spool(context.work_dir / "spool")
        self.inputs = InputCache(context.store)  # melodies and audio prompts, read once each
        self.saver = Saver()
        self.counting = threading.Lock()  # the main and saver threads both count finished clips

    def engine(self, model: str) -> MusicEngine:
        """Each model is loaded once per process, from the folder cache-ahead fetched it into."""
        if model not in self.engines:
            from musicsweep.engine import load_engine

            kill_point("load")
            started = time.monotonic()
            engine = load_engine(model, self.context.engine_config, self.sources.get(model))
            self.engines[model] = engine
            self.model_load_s += time.monotonic() - started
            self.last_progress = time.time()  # a loaded model is progress: the stall watchdog's clock restarts
            loaded = engine.loaded
            self.times.loaded(model, time.monotonic() - started, loaded.device, loaded.dtype)
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
        with self.counting:
            self.last_progress = time.time()
            line = self.progress.advance(clips, audio_s, generated=generated)
        log(line)

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
            log(f"replacing {job.output_name}: the stored object is incomplete ({problem})")
            return False
        spooled = self.spool.get(job)  # killed after its upload: the spool still knows its real cost
        if not store.exists(paths.cost_key):
            # Create-only: the real row of a worker that is just finishing this clip must win.
            store.put_new(paths.cost_key, json_bytes(self.cost_row(job, spooled).to_dict()))
        if not store.exists(paths.done_key):
            store.put_bytes(paths.done_key, b"recovered\n")
        self.spool.remove(job)
        partial.delete(store, job)
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
        paths = JobPaths.of(job, self.context.work_dir)
        store = self.context.store
        if (
            store.exists(paths.done_key)
            and stored_wav_problem(store, paths.audio_key, job.wav_seconds, job.channels) is None
        ):
            self.claims.release(job.job_id)  # finished by its previous owner just before we took over
        return None

    def cost_row(self, job: Job, spooled: SpooledClip | None) -> CostRow:
        """The clip's row from what its generator measured (kept with the spooled clip); without it
        (a WAV found in the store, its spool entry gone) the time and cost are unknown."""
        generation_time_s = None if spooled is None else spooled.generation_time_s
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
            batch_size=1 if spooled is None else spooled.batch_size,
            resumed_from_window=None if spooled is None else spooled.resumed_from_window,
        )

    def save(
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
        """WAV (verified), then cost row, then `.done`, then the spool entry goes: a reader never sees
        `.done` without the WAV, and a clip leaves this host's disk only once it is done.

        Runs on the saver thread for a fresh batch, on the main thread for one found in the spool."""
        paths = JobPaths.of(job, self.context.work_dir)
        if not self.claims.still_held(job.job_id):
            log(f"not saving {job.output_name}: another worker took its claim over after our lease ran out")
            self.spool.remove(job)
            return
        with self.times.timing("upload_s"):
            self.context.store.put_file(paths.audio_key, spooled.wav)
            log(f"uploaded {job.output_name}")
            kill_point("upload")
            row = self.cost_row(job, spooled)
            self.context.store.put_json(paths.cost_key, row.to_dict())
            self.context.store.put_bytes(paths.done_key, f"{time.time()}\n".encode())
        self.claims.release(job.job_id)
        self.spool.remove(job)
        partial.delete(self.context.store, job)
        self.saved.add(job.job_id)

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
            failed = [job for job in part if job.job_id not in self.saved]
            self.fail_all(failed, traceback.format_exc())
        finished = len(part) - len(failed)
        if finished:
            self.advance(finished, part[0].duration_s * finished)

    def deliver_if_spooled(self, job: Job) -> bool:
        """True if an earlier worker on this host generated the clip: it is uploaded, not generated again."""
        spooled = self.spool.get(job)
        if spooled is None:
            return False
        log(f"uploading {job.output_name} from the spool")
        self.deliver(job, spooled)
        return True

    def mark_failed(self, job: Job, error_text: str, permanent: bool = False) -> None:
        """This attempt's `.failed`; the claim is released, so a relaunch need not wait out the lease."""
        text = failure_text(error_text, permanent)
        log(f"FAILED {job.output_name}: {text.strip().splitlines()[0 if permanent else -1]}")
        paths = JobPaths.of(job, self.context.work_dir)
        self.write_failed(paths.failed_key(self.context.launch_id), job.job_id, text)
        self.claims.release(job.job_id)

    def write_failed(self, failed_key: str, job_id: str, error_text: str) -> None:
        self.failed.append(job_id)
        try:
            self.context.store.put_bytes(failed_key, error_text.encode())
        except StoreUnreachable:
            raise
        except Exception as error:  # e.g. a full disk: the log and the exit status still tell
            log(f"could not write {failed_key}: {error}")

    def window_done(self, batch: list[Job], paid_s: list[float], started: float, checkpoint: WindowCheckpoint) -> None:
        """Checkpoint a long batch after each window but its last, with what each clip has cost since
        `started` on top of `paid_s` (earlier attempts); stop here if asked (SIGTERM/SIGUSR2)."""
        self.last_progress = time.time()
        log(f"window {checkpoint.windows_done}/{checkpoint.windows_total} of {len(batch)} clip(s)")
        if checkpoint.windows_done == checkpoint.windows_total:
            return  # the clips themselves follow at once
        share_s = (time.monotonic() - started) / len(batch)
        with self.times.timing("upload_s"):
            partial.save(self.context.store, batch, checkpoint, [paid + share_s for paid in paid_s])
        kill_point(f"window{checkpoint.windows_done}")
        if self.stop.requested:
            log(f"stopping after window {checkpoint.windows_done}/{checkpoint.windows_total}: checkpoint saved")
            raise StopAtWindow

    def run_batch(self, batch: list[Job]) -> None:
        """Generate and save one batch; a failed batch is retried in halves down to single clips."""
        first = batch[0]
        engine = self.engine(first.model)
        self.progress.begin()
        log(f"generating {len(batch)} clip(s) of {first.duration_s:g}s")

        def attempt(part: list[Job]) -> tuple[list[np.ndarray], float, partial.Resume | None]:
            started = time.monotonic()
            resume = partial.load(self.context.store, part)
            checkpoint = resume.checkpoint if resume else None
            if checkpoint is not None:
                how = "same batch: bit for bit" if resume.same_batch else "other batch: a fresh RNG stream"
                window = f"{checkpoint.windows_done}/{checkpoint.windows_total}"
                log(f"resuming {len(part)} clip(s) after window {window} ({how})")
            prompts, seeds = [j.prompt for j in part], [j.seed for j in part]
            on_window = functools.partial(self.window_done, part, partial.paid_before(resume, part), started)
            inputs = self.inputs.for_batch(part)
            clips = engine.generate(prompts, seeds, first.duration_s, first.params, checkpoint, on_window, inputs)
            kill_point("generate")
            return clips, time.monotonic() - started, resume

        def on_retry(failed_size: int, next_size: int, reason: str) -> None:
            self.batch_caps[first.group_key] = min(self.batch_caps.get(first.group_key, failed_size), next_size)
            log(f"batch of {failed_size} failed ({reason}); retrying in batches of {next_size}")

        for part, result, error_text in with_backoff(batch, attempt, on_retry):
            if result is None:
                self.mark_failed(part[0], error_text or "", permanent=is_permanent_error(error_text or ""))
                self.advance(1, first.duration_s, generated=False)
                continue
            clips, elapsed, resume = result
            self.generation_s += elapsed
            if resume is None:  # a resumed batch's time is not a whole batch's: kept out of the calibration
                self.times.batch(first.model, len(part), first.duration_s, first.params.extend_stride_s, elapsed)
            resumed_from = None if resume is None else resume.checkpoint.windows_done
            spooled = [
                self.save(job, clip, engine.sampling_rate, paid + elapsed / len(part), len(part), resumed_from)
                for job, clip, paid in zip(part, clips, partial.paid_before(resume, part), strict=True)
            ]
            audio = first.duration_s * len(part)
            log(f"batch of {len(part)} x {first.duration_s:g}s in {elapsed:.1f}s ({audio / elapsed:.2f} audio s/s)")
            self.saver.submit(functools.partial(self.deliver_batch, part, spooled))

    def run(self, jobs: list[Job]) -> int:
        """Every job, then the saver drained (also when stopped or failing): the status counts every delivery."""
        self.progress = Progress(len(jobs), sum(job.duration_s for job in jobs))
        with self.saver:
            with self.times.timing("setup_s"):
                jobs = self.cache_ahead(jobs)
            deferred = self.generate(jobs)
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
                    self.times.chose(group[0].model, size)
                except StoreUnreachable:
                    raise
                except Exception:  # the model failed to load: its whole group fails now, not batch by batch
                    self.fail_all(pending, traceback.format_exc(), permanent=True)
                    break
                taken, pending = pending[:size], pending[size:]
                batch = self.claim_batch(taken, deferred)
                if batch:
                    self.run_claimed(batch)
        return deferred

    def claim_batch(self, taken: list[Job], deferred: list[Job]) -> list[Job]:
        """The jobs of `taken` to generate now; others' live claims go to `deferred`; finished or
        spooled ones are counted; a job whose check itself fails (a full disk) is marked failed."""
        batch = []
        for job in taken:
            try:
                if self.finish_if_present(job):
                    self.advance(1, job.duration_s, generated=False)
                    continue
                other = self.claim(job)
                if other is not None:
                    deferred.append(job)
                    self.last_progress = max(self.last_progress, other.expires - self.claims.lease_s)
                elif job.job_id not in self.claims.held:  # done by the previous owner meanwhile
                    self.finish_if_present(job)
                    self.advance(1, job.duration_s, generated=False)
                elif self.deliver_if_spooled(job):
                    self.advance(1, job.duration_s, generated=False)
                else:
                    batch.append(job)
            except StoreUnreachable:
                raise
            except Exception:
                self.mark_failed(job, traceback.format_exc())
                self.advance(1, job.duration_s, generated=False)
        return batch

    def run_claimed(self, batch: list[Job]) -> None:
        """Run a claimed batch, split by where its clips resume (`partial.resume_groups`)."""
        try:
            for part in partial.resume_groups(self.context.store, batch):
                if self.stop.requested:  # stopped between two parts: the rest resume in a later launch
                    raise StopAtWindow
                self.run_batch(part)
        except StoreUnreachable:
            raise
        except StopAtWindow:  # checkpointed: the next launch resumes it, without waiting out our lease
            self.saver.wait()  # parts already handed off keep their claims until they are delivered
            for job in batch:
                if job.job_id not in self.saved:
                    self.claims.release(job.job_id)
        except Exception:  # e.g. a full disk under the spool: clips already saved stay done
            self.saver.wait()  # the saver delivers or fails the parts handed off; the rest fail here
            unsaved = [job for job in batch if job.job_id not in self.saved and job.job_id not in self.failed]
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
        } | self.times.to_dict()

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
    specs = load_specs(args.specs)
    jobs = specs.jobs
    write_pid_files(jobs, context.work_dir)
    sweep = specs.sweep(context.work_dir)
    claims = Claims(context.store, sweep, owner_of(context.host, context.launch_id, context.worker_id), context.lease_s)
    worker = Worker(context, stop, claims)
    worker_paths = WorkerPaths(context.work_dir, sweep, context.worker_id)
    lifetime = lambda: worker.lifetime(started, finished=False)  # noqa: E731
    heartbeat = Heartbeat(context, worker_paths, lifetime, claims, lambda: worker.last_progress)
    heartbeat.start()
    log(f"worker {context.worker_id}/{context.num_workers} on {context.host}: {len(jobs)} job(s)")
    try:
        fail_broken_specs(worker, specs)
        status = worker.run(jobs) if jobs else 1
    except StoreUnreachable as error:
        log(f"giving up: {error}; spooled clips stay in {worker.spool.folder} for the next worker")
        status = EXIT_STORE_UNREACHABLE
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=30)
    store = direct(context.store) if status == EXIT_STORE_UNREACHABLE else context.store
    try:
        store.put_json(worker_paths.lifetime_key(context.launch_id), worker.lifetime(started, finished=True))
    except Exception as error:  # the heartbeat's last record stands in for it
        log(f"lifetime record not written: {error}")
    log(f"worker finished with status {status}")
    upload_log(store, worker_paths)
    return status


def fail_broken_specs(worker: Worker, specs: LoadedSpecs) -> None:
    """Give every job whose spec would not load its `.failed`, with the one-line reason."""
    sweep = specs.sweep(worker.context.work_dir)
    for job_id, reason in specs.broken.items():
        log(f"FAILED {job_id}: {reason}")
        paths = JobPaths(worker.context.work_dir, sweep, job_id, "")
        worker.write_failed(paths.failed_key(worker.context.launch_id), job_id, reason)
