"""What runs on a host: `python -m musicsweep.worker SPEC...`.

Loads each model once, generates its jobs in batches grouped by (model, params, duration), and for
each clip writes the WAV, then its cost row, then `.done`, all through the store. Before generating
a clip it claims it (`claims`); a clip another live worker holds is deferred. Once its own shard is
through, the worker takes free clips of the sweep's other shards (`pool`,
`worker.take_from_others`) and exits when every clip left is held by a live worker or faster
workers would make the rest sooner; with that
switch off it waits for its deferred clips, skipping each once done or taking it over once its
claim expires. A job that raises gets this attempt's `.failed` with the traceback (headed
`permanent failure:` when a retry cannot help, see `musicsweep.failure`) and the worker moves on. A
long clip's batch is checkpointed after each continuation window (`worker.partial`) and a later
launch resumes it from there, in whatever batch its clips are then (a batch is split by resume
point); a resumed clip's cost row counts the generation seconds of every attempt that checkpointed
it. SIGUSR2/SIGTERM ask it to stop at the next window boundary, checkpoint saved (preemption, spot
interruption); it then exits with EXIT_STOPPED.
Every store call rides out outages within `store.outage_budget_s` (`store.retry`); past it the
worker exits with EXIT_STORE_UNREACHABLE, marking nothing, and its generated clips wait in the
spool (`worker.spool`) for the next worker on this host to upload.

The worker is a thin coordinator over one object per concern: `models` (cache-ahead, each model
loaded once), `sizing` (batch sizes and back-off caps), `batches` (one batch through the GPU and its
window checkpoints), `delivery` (spool -> WAV -> cost row -> `.done` -> release), `failures`
(`.failed`), `tally` (saved, failed, skipped, progress) and `lifetime` (the paid-time record). It
logs through `worker.log`, whose line format the drills and `auto_pull` parse.

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
import os
import time
import traceback
from collections import defaultdict
from pathlib import Path

from musicsweep.atomic import atomic_write_bytes
from musicsweep.contract import LOG_FILE, SPECS_SHA256, VERSION, WorkerEnv
from musicsweep.digests import MISMATCH
from musicsweep.engine.checkpoint import StopAtWindow
from musicsweep.errors import MusicsweepError
from musicsweep.failure import failure_text
from musicsweep.job import Job
from musicsweep.layout import JobPaths, WorkerPaths
from musicsweep.store.base import Store
from musicsweep.store.retry import StoreUnreachable, direct
from musicsweep.store.verify import stored_wav_problem
from musicsweep.version import describe
from musicsweep.worker import partial
from musicsweep.worker.batches import BatchRunner
from musicsweep.worker.claims import Claim, Claims, owner_of
from musicsweep.worker.context import (
    EXIT_BAD_ENVIRONMENT,
    EXIT_STOPPED,
    EXIT_STORE_UNREACHABLE,
    StopFlag,
    WorkerContext,
)
from musicsweep.worker.delivery import Delivery
from musicsweep.worker.failures import Failures
from musicsweep.worker.heartbeat import Heartbeat, heartbeat_interval
from musicsweep.worker.lifetime import Lifetime
from musicsweep.worker.log import configure_logging, log
from musicsweep.worker.models import ModelCache
from musicsweep.worker.pool import Place, Pool, describe_place
from musicsweep.worker.saver import Saver
from musicsweep.worker.sizing import BatchSizer
from musicsweep.worker.specs import LoadedSpecs, SpecBook, load_specs
from musicsweep.worker.tally import Tally
from musicsweep.worker.version import other_version_refusal

__all__ = ["EXIT_STOPPED", "EXIT_STORE_UNREACHABLE", "main"]

LOST_RACE_WAIT_S = 0.5  # the first wait after others claimed a round's clips first (`Worker.after_lost_race`)


def write_pid_files(jobs: list[Job], work_dir: Path) -> None:
    """`pid pgid` per job: liveness uses the pid, orphan killing the whole process group. Each is
    replaced atomically (a poll never reads half a line) but not fsynced: a `.pid` speaks of this
    boot's processes only, and an fsync each held a worker of thousands of clips at its start."""
    line = f"{os.getpid()} {os.getpgid(0)}\n".encode()
    for job in jobs:
        atomic_write_bytes(JobPaths.of(job, work_dir).pid, line, fsync=False)


def group_jobs(jobs: list[Job]) -> list[list[Job]]:
    """Jobs that can share a generate() call, in first-seen order."""
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        groups[job.group_key].append(job)
    return list(groups.values())


class Worker:
    """Claims clips group by group, runs each claimed batch, and waits for the saver before it returns."""

    def __init__(
        self,
        context: WorkerContext,
        stop: StopFlag,
        claims: Claims,
        started: float | None = None,
        book: SpecBook | None = None,
    ) -> None:
        self.context, self.stop, self.claims = context, stop, claims
        self.book = book or SpecBook(context.work_dir, claims.keys.sweep, context.store)  # unchecked: by hand
        self.tally = Tally()
        self.lifetime = Lifetime(context, self.tally, time.time() if started is None else started)
        self.models = ModelCache(context.engine_config, self.lifetime, self.tally, stop.event)
        self.sizer = BatchSizer(context.engine_config, self.models)
        self.failures = Failures(context, claims, self.tally)
        self.delivery = Delivery(context, claims, self.tally, self.failures, self.lifetime.times)
        self.saver = Saver()
        self.batches = BatchRunner(
            context, stop, self.models, self.sizer, self.lifetime, self.tally, self.failures, self.delivery, self.saver
        )
        self.group: tuple | None = None  # the group of the last batch run: taken clips of it come first
        self.places: dict[str, Place] = {}  # where the pool found each clip, for the log
        self.own: set[str] = set()
        self.taking = context.take_from_others  # may still take clips of other shards (the heartbeat says so)

    def run(self, jobs: list[Job]) -> int:
        """Every job, then free clips of other shards (`worker.pool`), then the saver drained (also when
        stopped or failing): the status counts every delivery. Claims left are handed back."""
        self.tally.start(jobs)
        self.own = {job.job_id for job in jobs}
        with self.saver:
            with self.lifetime.times.timing("setup_s"):
                jobs = self.cache_ahead(jobs)
            if self.context.take_from_others:
                self.take_from_pool(self.skip_finished(jobs))
            else:
                self.wait_for(self.generate(jobs))
        self.hand_back()
        if self.stop.requested:
            return EXIT_STOPPED
        return 1 if self.tally.failed else 0

    def skip_finished(self, jobs: list[Job]) -> list[Job]:
        """Own clips already whole in the store, counted and logged as a fixed-shard worker does; the
        pool goes by markers, so this is where a `.done` over a torn object is found and removed."""
        left = []
        for job in jobs:
            try:
                finished = self.delivery.finish_if_present(job)
            except StoreUnreachable:
                raise
            except Exception:  # checked again, and failed if it must be, when the pool hands it out
                finished = False
            if finished:
                self.tally.advance(1, job.duration_s, generated=False)
            else:
                left.append(job)
        return left

    def wait_for(self, deferred: list[Job]) -> None:
        """Fixed shards: each clip another worker holds is skipped once done, or taken over once its claim expires."""
        while deferred and not self.stop.requested:
            self.stop.event.wait(heartbeat_interval(self.claims.lease_s))
            deferred = self.generate(deferred)

    def take_from_pool(self, own: list[Job]) -> None:
        """One batch per look at the sweep (`worker.pool`): its own shard's free clips first, then
        others', until none is left that this worker could take or faster workers would make the
        rest sooner. It waits only for clips of silent owners, whose leases will run out."""
        try:
            self.take_rounds(Pool(self.context, self.claims, own, self.tally, self.book))
        finally:
            self.taking = False  # the heartbeat tells the relaunch policy this worker takes no more

    def take_rounds(self, pool: Pool) -> None:
        unfetchable: set[str] = set()
        lost_races = 0  # rounds in a row whose free clips others claimed first
        while not self.stop.requested:
            found = pool.survey(self.group, set(self.models.engines))
            self.places = found.places
            free = [job for job in found.free if job.model not in unfetchable]
            new_models = {job.model for job in free} - set(self.models.sources) - set(self.models.engines)
            if new_models:
                unfetchable |= set(self.models.fetch(sorted(new_models)))
                free = [job for job in free if job.model not in unfetchable]
            if free:
                group = [job for job in free if job.group_key == free[0].group_key]
                if found.leave_to_faster(group[: self.sizer.known_size(group[0])], self.tally.rate):
                    log(f"leaving {len(free)} free clip(s) to faster workers: they finish them sooner")
                    return
                if len(self.generate(group, batches=1)) == len(group):  # others claimed all of them since
                    lost_races += 1
                    self.stop.event.wait(self.after_lost_race(lost_races))
                else:
                    lost_races = 0
            elif found.waiting:
                self.stop.event.wait(heartbeat_interval(self.claims.lease_s))
            else:
                log(f"nothing left to take: {found.held} clip(s) of the sweep held by live workers")
                return

    def after_lost_race(self, in_a_row: int) -> float:
        """How long to wait before the next look once others claimed every clip of a round first: the
        next look sees their claims, so a short wait, doubling while races keep being lost (a survey
        and a claim that disagree never spin), up to a heartbeat. A whole heartbeat at once kept a
        pod idle and paid for a minute after its clips were taken at start."""
        return min(LOST_RACE_WAIT_S * 2 ** (in_a_row - 1), heartbeat_interval(self.claims.lease_s))

    def hand_back(self) -> None:
        """Release every claim still held once the saver is through (a stop before their batch ran),
        so the sweep's other workers take those clips at once instead of waiting out the lease."""
        left = list(self.claims.held)
        for job_id in left:
            self.claims.release(job_id)
        if left:
            log(f"handed back {len(left)} unstarted clip(s)")

    def cache_ahead(self, jobs: list[Job]) -> list[Job]:
        """Every model fetched before the first clip; the jobs of a model that cannot be fetched fail at once."""
        errors = self.models.fetch([job.model for job in jobs])
        for job in jobs:
            if job.model in errors:
                if not self.delivery.finish_if_present(job):
                    self.failures.mark(job, errors[job.model] + "\n", permanent=True)
                self.tally.advance(1, job.duration_s, generated=False)
        return [job for job in jobs if job.model not in errors]

    def generate(self, jobs: list[Job], batches: int | None = None) -> list[Job]:
        """Generate every job this worker can claim (or only the first `batches` batches it claims);
        returns those another live worker holds."""
        deferred: list[Job] = []
        ran = 0
        for group in group_jobs(jobs):
            pending = list(group)
            while pending:
                if self.stopped_before(pending):
                    return deferred
                try:
                    self.models.engine(group[0].model)  # loaded before any claim: a load takes minutes
                    size = self.sizer.size(group[0])
                    self.lifetime.times.chose(group[0].model, size)
                except StoreUnreachable:
                    raise
                except Exception:  # the model failed to load: the group fails now, not batch by batch
                    error = traceback.format_exc()
                    # Only the clips this worker can claim: never one another worker holds or has made.
                    claimed = self.claim_batch(pending, deferred)
                    if claimed:
                        self.failures.mark_all(claimed, error, permanent=True)
                    break
                if self.stopped_before(pending):  # a stop (a spot notice) that came during the load
                    return deferred
                taken, pending = pending[:size], pending[size:]
                batch = self.claim_batch(taken, deferred)
                if batch:
                    self.group = group[0].group_key
                    self.note_taken(batch)
                    self.run_claimed(batch)
                    ran += 1
                    if ran == batches:
                        return deferred
        return deferred

    def stopped_before(self, pending: list[Job]) -> bool:
        """A stop was requested: nothing more is claimed, and `run` hands back what is held."""
        if self.stop.requested:
            log(f"stopped early: {len(pending)} clip(s) of this group left for a relaunch")
        return self.stop.requested

    def note_taken(self, batch: list[Job]) -> None:
        """Clips of other shards: logged with whose they were, and their `.pid` written here, so a
        poll of this folder sees this worker generating them."""
        others = [job for job in batch if job.job_id not in self.own]
        for job in others:
            log(f"took {job.output_name} from {describe_place(self.places.get(job.job_id))}")
        if others:
            write_pid_files(others, self.context.work_dir)

    def claim_batch(self, taken: list[Job], deferred: list[Job]) -> list[Job]:
        """The jobs of `taken` to generate now; others' live claims go to `deferred`; finished or
        spooled ones are counted; a job whose check itself fails (a full disk) is marked failed."""
        batch = []
        delivery = self.delivery
        for job in taken:
            counted = True
            try:
                if delivery.finish_if_present(job):
                    self.tally.advance(1, job.duration_s, generated=False)
                    continue
                other = self.claim(job)
                if other is not None:
                    deferred.append(job)
                    counted = False
                    self.tally.last_progress = time.time()  # waiting on a live claim is not a stall
                elif job.job_id not in self.claims.held:  # done by the previous owner meanwhile
                    delivery.finish_if_present(job)
                    self.tally.advance(1, job.duration_s, generated=False)
                elif delivery.deliver_if_spooled(job):
                    self.tally.advance(1, job.duration_s, generated=False)
                else:
                    batch.append(job)
            except StoreUnreachable:
                raise
            except Exception:
                self.failures.mark(job, traceback.format_exc())
                self.tally.advance(1, job.duration_s, generated=False)
            if counted:
                self.tally.include(job)
        return batch

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
            self.claims.release(job.job_id, "done")  # finished by its previous owner just before we took over
        return None

    def run_claimed(self, batch: list[Job]) -> None:
        """Run a claimed batch, split by where its clips resume (`partial.resume_groups`)."""
        saved = self.tally.saved
        try:
            for part in partial.resume_groups(self.context.store, batch):
                if self.stop.requested:  # stopped between two parts: the rest resume in a later launch
                    raise StopAtWindow
                self.batches.run(part)
        except StoreUnreachable:
            raise
        except StopAtWindow:  # checkpointed: the next launch resumes it, without waiting out our lease
            self.saver.wait()  # parts already handed off keep their claims until they are delivered
            for job in batch:
                if job.job_id not in saved:
                    self.claims.release(job.job_id, "stopped")
        except Exception:  # e.g. a full disk under the spool: clips already saved stay done
            self.saver.wait()  # the saver delivers or fails the parts handed off; the rest fail here
            unsaved = [job for job in batch if job.job_id not in saved and job.job_id not in self.tally.failed]
            if unsaved:
                self.failures.mark_all(unsaved, traceback.format_exc())


def upload_log(store: Store, paths: WorkerPaths, log_file: str | None) -> None:
    """Copy the log its script writes (`contract.LOG_FILE`) into an off-host store, since a cloud host
    may be gone when auto_pull looks: under this attempt's own key, beside the earlier attempts'."""
    if log_file and store.local_path(paths.log_key) is None and Path(log_file).exists():
        try:
            store.put_file(paths.log_key, Path(log_file))
        except Exception as error:  # the results are already safe; a lost log must not fail the worker
            log(f"log upload failed: {error}")


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(description="Generate the clips of the given job spec files.")
    parser.add_argument("specs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    configure_logging()
    # The version comes first: a worker of other code cannot trust the rest of the environment's contract.
    refusal = other_version_refusal(os.environ.get(VERSION, ""))
    if refusal:
        log(f"error: {refusal}")
        return EXIT_BAD_ENVIRONMENT
    try:
        env = WorkerEnv.from_env(os.environ)
        context = WorkerContext.of(env)
    except MusicsweepError as error:
        log(f"error: {error}")
        return EXIT_BAD_ENVIRONMENT
    log(describe())
    stop = StopFlag()
    stop.install()
    named = env.launch.sweep or context.work_dir.name
    book = SpecBook.of_launch(context.work_dir, named, context.store, env.launch.specs_sha256)
    if book.digests is None:
        log(f"job specs are not checked: {SPECS_SHA256} is not set (a worker started by hand)")
    specs = load_specs(args.specs, book)
    jobs = specs.jobs
    write_pid_files(jobs, context.work_dir)
    sweep = specs.sweep(named)
    claims = Claims(context.store, sweep, owner_of(context.host, context.launch_id, context.worker_id), context.lease_s)
    worker = Worker(context, stop, claims, started, book)
    worker_paths = WorkerPaths(context.work_dir, sweep, context.worker_id, context.launch_id, context.attempt)
    lifetime = lambda: worker.lifetime.record(finished=False)  # noqa: E731
    tally = worker.tally
    takes, rate = (lambda: worker.taking and not stop.requested), (lambda: tally.rate)
    heartbeat = Heartbeat(context, worker_paths, lifetime, claims, lambda: tally.last_progress, takes, rate)
    heartbeat.start()
    log(f"worker {context.worker_id}/{context.num_workers} on {context.host}: {len(jobs)} job(s)")
    try:
        fail_broken_specs(worker, specs, sweep)
        status = worker.run(jobs) if jobs else 1
    except StoreUnreachable as error:
        log(f"giving up: {error}; spooled clips stay in {worker.delivery.spool.folder} for the next worker")
        status = EXIT_STORE_UNREACHABLE
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=30)
    store = direct(context.store) if status == EXIT_STORE_UNREACHABLE else context.store
    try:
        store.put_json(worker_paths.lifetime_key(context.launch_id), worker.lifetime.record(finished=True))
    except Exception as error:  # the heartbeat's last record stands in for it
        log(f"lifetime record not written: {error}")
    log(f"worker finished with status {status}")
    upload_log(store, worker_paths, os.environ.get(LOG_FILE))
    return status


def fail_broken_specs(worker: Worker, specs: LoadedSpecs, sweep: str) -> None:
    """Give every job whose spec would not load (or was refused) its `.failed`, with the one-line reason."""
    for job_id, reason in specs.broken.items():
        log(f"FAILED {job_id}: {reason}")
        paths = JobPaths(worker.context.work_dir, sweep, job_id, "")
        text = failure_text(reason, permanent=reason.startswith(MISMATCH))  # a relaunch re-reads no swapped spec
        worker.failures.write(paths.failed_key(worker.context.launch_id), job_id, text)
