"""Every local path and store key of a sweep, built here and nowhere else.

A sweep has one layout on three sides:
- the launcher's sweep folder (`SweepDir`): manifest, specs, scripts, logs and pulled results;
- a host's work folder (`JobPaths`, `WorkerPaths` over any `work_dir`, local or remote): specs,
  `.pid` files, scripts and logs;
- the store (`StoreKeys`): `{sweep}/audio`, `costs`, `markers`, `claims`, `logs`, `workers`, ...

The sweep folder mirrors the store's key layout, so with a local store the worker writes straight
into it and nothing needs copying.
"""

from __future__ import annotations

import json
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cloudpickle

from musicsweep.atomic import atomic_write_bytes, atomic_write_text
from musicsweep.digests import check_digest, sha256_hex
from musicsweep.errors import MusicsweepError
from musicsweep.job import Job
from musicsweep.manifest import Manifest

JOBS_DIR, SCRIPTS_DIR, LOGS_DIR, MARKERS_DIR = "jobs", "scripts", "logs", "markers"
AUDIO_DIR, COSTS_DIR, WORKERS_DIR, CLAIMS_DIR = "audio", "costs", "workers", "claims"
PARTIAL_DIR, INPUTS_DIR, LAUNCHES_DIR = "partial", "inputs", "launches"
STOPS_DIR = "stops"  # requests to a launch's driver to end a worker (Ray: `kill_orphans`)
SPOOL_DIR = "spool"  # in a host's work folder: clips generated but not yet done (worker/spool.py)
PULLED_FOLDERS = (AUDIO_DIR, COSTS_DIR, MARKERS_DIR, LOGS_DIR, WORKERS_DIR)
DONE_SUFFIX, FAILED_SUFFIX, PID_SUFFIX, HEARTBEAT_SUFFIX = ".done", ".failed", ".pid", ".heartbeat"
SPEC_WRITERS, SPEC_CHUNK = 8, 1000  # threads that write a launch's specs, and specs pickled ahead of them
# The estimate's history shared by a team (`estimate.share`); no sweep name starts with "_".
CALIBRATION_KEY = "_musicsweep/calibration.json"


# What to do about a manifest that cannot be read: no command writes over one it could not read.
MANIFEST_WAY_OUT = (
    "fix or restore it (no command writes over it), or move it aside and run the sweep again, "
    "which skips the clips already in the store"
)


def calibration_file() -> Path:
    """This user's estimate history: `$XDG_CACHE_HOME/musicsweep/calibration.json` (default ~/.cache)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "musicsweep" / "calibration.json"


def spec_list_name(list_sha256: str) -> str:
    """A launch's spec digests (`digests`), beside the specs in `jobs/`, named by its own digest: the
    environment that vouches for it finds it too, whatever the launch id becomes (a SLURM requeue's)."""
    return f"specs-{list_sha256[:16]}.sha256"


def spec_list_file(work_dir: Path | str, list_sha256: str) -> Path:
    """Where a worker reads its launch's spec list: its work folder's `jobs/`, beside its specs."""
    return Path(work_dir) / JOBS_DIR / spec_list_name(list_sha256)


def spool_folder(work_dir: Path | str) -> Path:
    """A host's spool, shared by its workers so the next one uploads what an earlier one generated."""
    return Path(work_dir) / SPOOL_DIR


def done_marker(job_id: str) -> str:
    """The file name of a job's `.done` marker, as listed under `markers/`."""
    return f"{job_id}{DONE_SUFFIX}"


def failed_marker(job_id: str, launch_id: str | None) -> str:
    """`{job_id}.{launch}.failed`: a failure belongs to one attempt, so a newer attempt supersedes it."""
    return f"{job_id}.{launch_id}{FAILED_SUFFIX}"


def attempt_suffix(attempt: int) -> str:
    """`.attemptK` for a worker's K-th restart within its launch (Ray restarts a lost one), else nothing."""
    return f".attempt{attempt}" if attempt else ""


def worker_log_name(worker_id: int, launch_id: str, attempt: int = 0) -> str:
    """`worker_N.LAUNCH.log` (`worker_N.LAUNCH.attemptK.log` for a Ray restart): one log per attempt,
    so a relaunched or restarted worker N never overwrites an earlier one's; `worker_N.log` where a
    backend's script names no launch."""
    base = f"worker_{worker_id}.{launch_id}" if launch_id else f"worker_{worker_id}"
    return f"{base}{attempt_suffix(attempt)}.log"


def heartbeat_marker(worker_id: int, launch_id: str) -> str:
    return f"worker_{worker_id}.{launch_id}{HEARTBEAT_SUFFIX}"


def heartbeat_launch(name: str) -> str | None:
    """The launch of a heartbeat marker's file name (`heartbeat_marker`), else None."""
    if not (name.startswith("worker_") and name.endswith(HEARTBEAT_SUFFIX)):
        return None
    return name.removesuffix(HEARTBEAT_SUFFIX).partition(".")[2] or None


def marker_job_id(name: str) -> str | None:
    """The job id of a `.done` marker's file name, else None."""
    return name.removesuffix(DONE_SUFFIX) if name.endswith(DONE_SUFFIX) else None


@dataclass(frozen=True)
class StoreKeys:
    """Keys of one sweep in the store, relative to the store root."""

    sweep: str

    @property
    def prefix(self) -> str:
        """Every key of the sweep: list it once to see all of them."""
        return f"{self.sweep}/"

    def folder(self, name: str) -> str:
        return f"{self.prefix}{name}/"

    @property
    def markers(self) -> str:
        return self.folder(MARKERS_DIR)

    def audio(self, output_name: str) -> str:
        return f"{self.sweep}/{AUDIO_DIR}/{output_name}"

    def cost(self, job_id: str) -> str:
        return f"{self.sweep}/{COSTS_DIR}/{job_id}.json"

    def done(self, job_id: str) -> str:
        return self.markers + done_marker(job_id)

    def failed(self, job_id: str, launch_id: str | None) -> str:
        return self.markers + failed_marker(job_id, launch_id)

    @property
    def all_claims(self) -> str:
        """Every job's claims: one listing shows which jobs were ever claimed, and their generations."""
        return self.folder(CLAIMS_DIR)

    def claims(self, job_id: str) -> str:
        """The folder of a job's claims, one create-only object per generation (`worker.claims`)."""
        return f"{self.sweep}/{CLAIMS_DIR}/{job_id}/"

    def claim(self, job_id: str, generation: int) -> str:
        return f"{self.claims(job_id)}{generation:06d}.json"

    def partial(self, job_id: str) -> str:
        """A long clip's codes at its last window boundary (`worker.partial`), gone once `.done`."""
        return f"{self.sweep}/{PARTIAL_DIR}/{job_id}.codes"

    def input_audio(self, sha256: str) -> str:
        """A melody or audio prompt, 32 kHz, content-addressed: shipped once, read by every worker."""
        return f"{self.sweep}/{INPUTS_DIR}/{sha256}.wav"

    def spec(self, job_id: str) -> str:
        """A job's spec in the store, for hosts that fetch their work from it (EC2)."""
        return f"{self.sweep}/{JOBS_DIR}/{job_id}.pkl"

    def spec_list(self, list_sha256: str) -> str:
        """A launch's spec digests in the store, fetched with its specs (EC2)."""
        return f"{self.sweep}/{JOBS_DIR}/{spec_list_name(list_sha256)}"

    @property
    def launches(self) -> str:
        """Every launch's shard lists: the sweep's job list, read by workers that take others' clips."""
        return self.folder(LAUNCHES_DIR)

    def shard(self, launch_id: str, worker_id: int) -> str:
        """The job ids of one launch's worker: EC2 hosts fetch their work from it, and every worker
        that takes free clips of other shards (`worker/pool.py`) reads the sweep's jobs from them."""
        return f"{self.launches}{launch_id}/worker_{worker_id}.json"

    def shard_of(self, key: str) -> tuple[str, int] | None:
        """(launch, worker) of a `shard` key, else None."""
        parts = key.removeprefix(self.launches).split("/")
        name = parts[-1]
        if len(parts) != 2 or not (name.startswith("worker_") and name.endswith(".json")):
            return None
        number = name.removeprefix("worker_").removesuffix(".json")
        return (parts[0], int(number)) if number.isdigit() else None

    def stop_requests(self, launch_id: str) -> str:
        """The prefix of a launch's stop requests (Ray: `kill_orphans`), one key per worker id."""
        return f"{self.sweep}/{STOPS_DIR}/{launch_id}/worker_"

    def stop_request(self, launch_id: str, worker_id: int) -> str:
        """Asks the launch's driver to end one worker."""
        return f"{self.stop_requests(launch_id)}{worker_id}"

    def instance_end(self, launch_id: str, worker_id: int) -> str:
        """When a machine stopped working, written by the machine itself (EC2)."""
        return f"{self.sweep}/instances/{launch_id}-worker_{worker_id}.json"

    def log(self, worker_id: int, launch_id: str = "", attempt: int = 0) -> str:
        """Per attempt, so a relaunched or restarted worker N never overwrites what an earlier one uploaded."""
        return f"{self.sweep}/{LOGS_DIR}/{worker_log_name(worker_id, launch_id, attempt)}"

    def heartbeat(self, worker_id: int, launch_id: str) -> str:
        """Per launch, so a relaunched worker N never hides an earlier one's liveness."""
        return self.markers + heartbeat_marker(worker_id, launch_id)

    def lifetime(self, worker_id: int, launch_id: str, attempt: int = 0) -> str:
        """One record per launch and attempt, so neither a relaunched nor a restarted worker N hides
        an earlier one's paid time."""
        return f"{self.sweep}/{WORKERS_DIR}/worker_{worker_id}.{launch_id}{attempt_suffix(attempt)}.json"


def key_folder(key: str) -> str:
    """The folder of a key `{sweep}/{folder}/...` (`audio`, `costs`, `markers`, ...)."""
    return key.split("/")[1]


def list_markers(store, sweep: str) -> set[str]:
    """The file names under `{sweep}/markers/` in `store` (one listing call)."""
    return {key.rsplit("/", 1)[-1] for key in store.list(StoreKeys(sweep).markers)}


@dataclass(frozen=True)
class JobPaths:
    """A job's files: on a host, under its sweep's work folder (spec and the `.pid` of the worker
    that owns the job), and in the store (WAV, cost row, `.done`/`.failed`)."""

    work_dir: Path
    sweep: str
    job_id: str
    output_name: str

    @classmethod
    def of(cls, job: Job, work_dir: Path | str) -> JobPaths:
        return cls(Path(work_dir), job.sweep, job.job_id, job.output_name)

    @property
    def spec(self) -> Path:
        return self.work_dir / JOBS_DIR / f"{self.job_id}.pkl"

    @property
    def pid(self) -> Path:
        return self.work_dir / JOBS_DIR / f"{self.job_id}{PID_SUFFIX}"

    @property
    def keys(self) -> StoreKeys:
        return StoreKeys(self.sweep)

    @property
    def audio_key(self) -> str:
        return self.keys.audio(self.output_name)

    @property
    def cost_key(self) -> str:
        return self.keys.cost(self.job_id)

    @property
    def done_key(self) -> str:
        return self.keys.done(self.job_id)

    def failed_key(self, launch_id: str | None) -> str:
        return self.keys.failed(self.job_id, launch_id)

    @property
    def partial_key(self) -> str:
        return self.keys.partial(self.job_id)

    def claim_key(self, generation: int) -> str:
        return self.keys.claim(self.job_id, generation)

    @property
    def claims_prefix(self) -> str:
        return self.keys.claims(self.job_id)


@dataclass(frozen=True)
class WorkerPaths:
    """Files of one worker process: its generated script, pid, log and lifetime record. The log and
    lifetime record are the attempt's own (its launch, and a restart within it); the script and pid
    are replaced by the next attempt's."""

    work_dir: Path
    sweep: str
    worker_id: int
    launch_id: str = ""
    attempt: int = 0

    @property
    def script(self) -> Path:
        return self.work_dir / SCRIPTS_DIR / f"worker_{self.worker_id}.sh"

    @property
    def log(self) -> Path:
        return self.work_dir / LOGS_DIR / worker_log_name(self.worker_id, self.launch_id, self.attempt)

    @property
    def pid(self) -> Path:
        return self.work_dir / SCRIPTS_DIR / f"worker_{self.worker_id}{PID_SUFFIX}"

    @property
    def log_key(self) -> str:
        return StoreKeys(self.sweep).log(self.worker_id, self.launch_id, self.attempt)

    def lifetime_key(self, launch_id: str) -> str:
        return StoreKeys(self.sweep).lifetime(self.worker_id, launch_id, self.attempt)

    def heartbeat_key(self, launch_id: str) -> str:
        return StoreKeys(self.sweep).heartbeat(self.worker_id, launch_id)


def write_spec_file(folder: Path, job_id: str, data: bytes, present: set[str]) -> None:
    """`SweepDir.write_specs` for one spec: written in place when new, replaced when it differs."""
    name = f"{job_id}.pkl"
    path = os.path.join(folder, name)  # a str: a `Path` per job costs seconds per 100,000
    if name not in present:
        with open(path, "wb") as handle:
            handle.write(data)
        return
    with open(path, "rb") as handle:
        if handle.read() == data:
            return
    atomic_write_bytes(Path(path), data, fsync=False)


def spec_bytes(job: Job) -> bytes:
    """A job's spec: plain pickle, the very bytes cloudpickle writes for an importable class in half
    the time; cloudpickle for what pickle cannot write (a hidden variant value of a local class).
    The job's cached properties are computed first, so its bytes never depend on which were asked for."""
    job.output_name  # noqa: B018 (computes job_id and audio_content too)
    try:
        return pickle.dumps(job, protocol=cloudpickle.DEFAULT_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cloudpickle.dumps(job)


@dataclass(frozen=True)
class SweepDir:
    """`{sweeps_dir}/{sweep}`: owns every launch-side path of a sweep."""

    sweeps_dir: Path
    name: str

    @property
    def root(self) -> Path:
        return self.sweeps_dir / self.name

    @property
    def keys(self) -> StoreKeys:
        return StoreKeys(self.name)

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def launch_lock(self) -> Path:
        """Held while a launch plans against and writes the manifest (`sweep.lock`)."""
        return self.root / ".launch.lock"

    @property
    def audio(self) -> Path:
        return self.root / AUDIO_DIR

    def clip(self, output_name: str) -> Path:
        """A clip's pulled WAV."""
        return self.audio / output_name

    def folder(self, name: str) -> Path:
        """A pulled folder (`costs`, `markers`, `workers`, ...) of the sweep."""
        return self.root / name

    @property
    def plan_file(self) -> Path:
        """A dry run's per-clip plan, when it has too many clips to print (`cli/display.py`)."""
        return self.root / "plan.tsv"

    @property
    def pulled_index(self) -> Path:
        """What the pull copied, per key (`store.pull`)."""
        return self.root / ".pulled.json"

    @property
    def cost_report(self) -> Path:
        return self.root / "cost_report.csv"

    @property
    def cost_summary(self) -> Path:
        return self.root / "cost_summary.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def pod_ledger(self) -> Path:
        """RunPod's record of every pod the sweep created."""
        return self.root / "runpod" / "pods.json"

    @property
    def pod_costs(self) -> Path:
        """The pod ledger as a table: each pod's paid life and price."""
        return self.root / "runpod" / "pods.csv"

    def job(self, job: Job) -> JobPaths:
        return JobPaths.of(job, self.root)

    def job_by_id(self, job_id: str, output_name: str) -> JobPaths:
        return JobPaths(self.root, self.name, job_id, output_name)

    def worker(self, worker_id: int, launch_id: str = "", attempt: int = 0) -> WorkerPaths:
        return WorkerPaths(self.root, self.name, worker_id, launch_id, attempt)

    def local_file(self, key: str) -> Path:
        """Where a store key `{sweep}/...` lands when pulled."""
        return self.sweeps_dir / key

    def write_spec(self, job: Job) -> Path:
        path = self.job(job).spec
        atomic_write_bytes(path, spec_bytes(job))
        return path

    def job_files(self) -> set[str]:
        """The names in the work folder's `jobs/` (specs, `.pid` files): one listing, not a lookup per job."""
        try:
            return set(os.listdir(self.root / JOBS_DIR))
        except FileNotFoundError:
            return set()

    def write_specs(self, jobs: list[Job], present: set[str]) -> dict[str, str]:
        """Every job's spec, for a launch of thousands (`present`: `job_files()`). A new spec is
        written in place, since no worker reads it before this launch starts one; one that exists
        is replaced atomically, and only when it differs, since a worker of an earlier launch may
        be reading it (and a spec torn or swapped differs, so the next launch repairs it).
        None is fsynced: the manifest, written and fsynced after them, commits the launch. Files are
        written by SPEC_WRITERS threads, SPEC_CHUNK at a time: on a busy disk each create waits.
        Returns each job's SHA-256, of the bytes serialized here (never re-read: `digests`)."""
        folder = self.root / JOBS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        digests = {}
        with ThreadPoolExecutor(SPEC_WRITERS) as pool:
            for start in range(0, len(jobs), SPEC_CHUNK):
                chunk = [(job.job_id, spec_bytes(job)) for job in jobs[start : start + SPEC_CHUNK]]
                digests |= {job_id: sha256_hex(data) for job_id, data in chunk}
                list(pool.map(lambda item: write_spec_file(folder, *item, present), chunk))
        return digests

    def spec_paths(self, jobs: list[Job]) -> list[str]:
        """Each job's spec path, as `JobPaths.spec` names it, built as strings."""
        folder = os.path.join(self.root, JOBS_DIR)
        return [os.path.join(folder, f"{job.job_id}.pkl") for job in jobs]

    def spec_list(self, list_sha256: str) -> Path:
        return spec_list_file(self.root, list_sha256)

    def read_spec(self, job_id: str, sha256: str = "") -> Job:
        """A job's spec; with `sha256` (the manifest's), unpickled only when its bytes match it,
        else a one-line DigestMismatch: the launcher runs nothing from a spec swapped under it."""
        path = self.root / JOBS_DIR / f"{job_id}.pkl"
        data = path.read_bytes()
        if sha256:
            check_digest(data, sha256, f"{path} (run the sweep script again to write it anew)")
        return cloudpickle.loads(data)

    def read_manifest(self) -> Manifest:
        try:
            payload = json.loads(self.manifest.read_text())
        except FileNotFoundError:
            raise MusicsweepError(f"{self.manifest}: no such sweep (run it first)") from None
        except (ValueError, OSError) as error:
            raise MusicsweepError(f"{self.manifest}: unreadable JSON ({error}); {MANIFEST_WAY_OUT}") from None
        try:
            return Manifest.from_json(payload)
        except MusicsweepError as error:
            raise MusicsweepError(f"{self.manifest}: {error}; {MANIFEST_WAY_OUT}") from None

    def read_manifest_if_any(self) -> Manifest | None:
        """The manifest, or None before the sweep's first launch."""
        return self.read_manifest() if self.manifest.exists() else None

    def write_manifest(self, manifest: Manifest) -> None:
        """One line of JSON: indented JSON goes through the pure-Python encoder, seconds per 10,000 jobs."""
        atomic_write_text(self.manifest, json.dumps(manifest.to_json(), sort_keys=True) + "\n")


@dataclass(frozen=True)
class SlurmLaunchPaths:
    """A SLURM launch's scripts and task logs under a work dir (the sweep folder here, or as the
    compute nodes see it). Each launch has its own scripts folder, so a relaunch never rewrites a
    queued task's script; the array script runs `worker_{task}.sh` beside it."""

    work_dir: str
    launch_id: str

    @property
    def folder(self) -> str:
        return f"{self.work_dir}/{SCRIPTS_DIR}/slurm-{self.launch_id}"

    def worker_script(self, worker_id: int) -> str:
        return f"{self.folder}/worker_{worker_id}.sh"

    @property
    def array_script(self) -> str:
        return f"{self.folder}/array.sh"

    @property
    def task_logs(self) -> str:
        """sbatch's `--output` pattern: one log per array task, beside the workers' logs."""
        return f"{self.work_dir}/{LOGS_DIR}/slurm_%A_%a.out"


def latest_sweep(sweeps_dir: Path) -> str:
    """The most recently launched sweep, for `pull`, `status` and `cancel` with no name."""
    manifests = sorted(sweeps_dir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not manifests:
        raise MusicsweepError(f"{sweeps_dir}: no sweeps found")
    return manifests[-1].parent.name
