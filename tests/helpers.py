"""Test helpers shared by several test modules (a test module never imports another)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from musicsweep import VariantGenerator, run_sweep
from musicsweep.backends import get_backend
from musicsweep.config import EngineConfig, StoreConfig, load_config
from musicsweep.contract import TEST_KILL_AT, TEST_LAUNCHER_KILL_AT
from musicsweep.job import Job
from musicsweep.layout import StoreKeys, SweepDir
from musicsweep.states import FINISHED_STATES
from musicsweep.store import open_store
from musicsweep.store.base import Store
from musicsweep.store.s3 import S3Store
from musicsweep.sweep.follow import poll_once
from musicsweep.sweep.plan import jobs_from_variants
from musicsweep.sweep.trackers import OrphanTracker
from musicsweep.worker.claims import Claims, owner_of
from musicsweep.worker.context import StopFlag, WorkerContext
from musicsweep.worker.log import configure_logging
from musicsweep.worker.loop import Worker
from tests.fixtures.ec2 import EC2Project
from tests.fixtures.ray import RayTestCluster
from tests.fixtures.s3 import S3Bucket

COLLIDING = [  # job ids of 32 bits collided for this pair (both 1 s clips on tiny)
    {"prompt": "prompt number 51", "duration_s": 1, "model": "tiny", "seed": 6},
    {"prompt": "prompt number 85", "duration_s": 1, "model": "tiny", "seed": 75},
]


class MakesFolder:
    """A pickle that creates a folder when loaded: what a swapped spec could do with a worker's rights."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __reduce__(self):
        return (os.mkdir, (self.folder,))


def wait_for_sweep(name: str, timeout_s: float = 240, interval_s: float = 1.0) -> dict[str, str]:
    """Poll like auto_pull until every job is finished; returns the final states."""
    config = load_config()
    sweep = SweepDir(config.sweeps_dir, name)
    manifest = sweep.read_manifest()
    backend = get_backend(manifest.backend, config)
    deadline = time.monotonic() + timeout_s
    orphans = OrphanTracker()
    while True:
        states = poll_once(sweep, manifest, backend, orphans)
        if all(state in FINISHED_STATES for state in states.values()):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep {name} not finished after {timeout_s}s: {states}")
        time.sleep(interval_s)


def wav_info(path: Path) -> tuple[int, int, int]:
    """(sampling rate, channels, frames) of a WAV file."""
    with wave.open(str(path)) as handle:
        return handle.getframerate(), handle.getnchannels(), handle.getnframes()


def wav_bytes(fill: bytes = b"\0", frames: int = 28, sampling_rate: int = 32000) -> bytes:
    """A 16-bit mono WAV whose samples are `fill` bytes (100 bytes by default): whole by its header."""
    data = fill * (2 * frames)
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sampling_rate, 2 * sampling_rate, 2, 16)
    )
    return header + b"data" + struct.pack("<I", len(data)) + data


def wait_for_exit(pid: int, timeout_s: float = 60) -> None:
    """A worker also uploads its lifetime record and log after its last `.done`: wait for that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
        if not state or state.startswith("Z"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"worker script {pid} still running after {timeout_s}s")


class DutyCycle(threading.Thread):
    """Slows a process group to `share` of its speed: SIGCONT for `share` of every `period_s`, SIGSTOP
    for the rest, until the group is gone or `done` is set (`slowed_once_loaded` continues it then)."""

    def __init__(self, pgid: int, share: float = 0.25, period_s: float = 0.4) -> None:
        super().__init__(daemon=True)
        self.pgid, self.share, self.period_s = pgid, share, period_s
        self.done = threading.Event()

    def signal(self, signum: int) -> bool:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            return False
        return True

    def run(self) -> None:
        while not self.done.is_set() and self.signal(signal.SIGCONT):
            time.sleep(self.share * self.period_s)
            if not self.signal(signal.SIGSTOP):
                return
            self.done.wait((1 - self.share) * self.period_s)


LOADED = "] loaded model "


def wait_for_text(path: Path, text: str, count: int = 1, timeout_s: float = 240) -> None:
    """Until `path` holds `text` `count` times (a worker's log line)."""
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text().count(text) >= count):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: {text!r} not seen {count} time(s) after {timeout_s}s")
        time.sleep(0.2)


@contextlib.contextmanager
def slowed_once_loaded(
    pgid: int,
    own: tuple[Path, int],
    other: tuple[Path | Callable[[], Path], int],
    share: float = 0.25,
    meanwhile: Callable = lambda: None,
):
    """Slow the worker group `pgid` to `share` of its speed once both it and the other worker have loaded
    their model (each log holding `loaded model` the given number of times; the other's log may be
    named once `meanwhile` ran); paused in between if it loads first (`meanwhile` runs once it is
    paused: start the other worker there). A loaded host's
    start-up (a minute) is then not stretched fourfold."""
    cycle = DutyCycle(pgid, share)
    try:
        wait_for_text(own[0], LOADED, own[1])
        cycle.signal(signal.SIGSTOP)
        meanwhile()
        wait_for_text(other[0]() if callable(other[0]) else other[0], LOADED, other[1])
        cycle.start()
        yield cycle
    finally:
        cycle.done.set()
        if cycle.is_alive():
            cycle.join()
        cycle.signal(signal.SIGCONT)


def generated_names(log_text: str) -> list[str]:
    """The clips a worker generated (`] generated NAME`: one line per paid generation)."""
    return [line.split("] generated ", 1)[1].strip() for line in log_text.splitlines() if "] generated " in line]


def uploaded_names(log_text: str) -> list[str]:
    """The clips a worker delivered (`] uploaded NAME`)."""
    return [line.split("] uploaded ", 1)[1].strip() for line in log_text.splitlines() if "] uploaded " in line]


def taken_names(log_text: str) -> list[str]:
    """The clips a worker took from other shards (`] took NAME from ...`)."""
    return [line.split("] took ", 1)[1].split(" ", 1)[0] for line in log_text.splitlines() if "] took " in line]


def window_lines(log_text: str) -> list[str]:
    """The `window i/n` of each window the workers generated, from their log lines."""
    return [line.split("] window ", 1)[1].split(" ", 1)[0] for line in log_text.splitlines() if "] window " in line]


def batch_seconds(log_text: str) -> list[float]:
    """Each batch's generation time, from the workers' `batch of N x Ds in Ts` log lines."""
    return [float(line.rsplit(" in ", 1)[1].split("s ")[0]) for line in log_text.splitlines() if "] batch of " in line]


def make_worker(tmp_path: Path, **engine: object) -> Worker:
    context = WorkerContext(
        work_dir=tmp_path / "work",
        store=open_store(StoreConfig(url=str(tmp_path / "store"))),
        worker_id=0,
        num_workers=1,
        hourly_cost_usd=1.0,
        is_restart=False,
        launch_id="test",
        engine_config=EngineConfig(**engine),
    )
    claims = Claims(context.store, "s", owner_of(context.host, context.launch_id, 0))
    configure_logging()  # as the worker's entry point does: the tests read its log lines from stdout
    return Worker(context, StopFlag(), claims)


def make_jobs(count: int, duration_s: float = 2.0, model: str = "tiny") -> list[Job]:
    variants = [{"prompt": f"clip {i}", "duration_s": duration_s, "model": model, "seed": i} for i in range(count)]
    return [Job.from_variant(v, sweep="s", where=f"variant {i}") for i, v in enumerate(variants)]


def write_local_config(project: Path, store: str, batch_size: int, store_extra: str = "") -> None:
    (project / "musicsweep.yaml").write_text(
        f"backend: local\nstore:\n  url: {store}\n{store_extra}sweeps_dir: ./runs\n"
        f"engine:\n  batch_size: {batch_size}\nbackends:\n  local:\n    workers: 1\n    hourly_cost_usd: 0.5\n"
    )


def set_recovery(project: Path, **values: object) -> None:
    """Append a `recovery:` section with `values` to the project's musicsweep.yaml."""
    lines = "".join(f"  {key}: {value}\n" for key, value in values.items())
    path = project / "musicsweep.yaml"
    path.write_text(path.read_text() + "recovery:\n" + lines)


def s3_extra(endpoint_url: str, budget_s: float | None = None) -> str:
    budget = f"  outage_budget_s: {budget_s}\n" if budget_s is not None else ""
    return f"  endpoint_url: {endpoint_url}\n  region: us-east-1\n{budget}"


def clips(count: int, duration_s: float) -> VariantGenerator:
    vg = VariantGenerator()
    vg.add("prompt", ["warm lofi piano", "fast techno drums", "slow ambient strings", "solo cello"][:count])
    vg.add("duration_s", [duration_s])
    vg.add("seed", [5])
    return vg


def run_sweep_script(
    project: Path, name: str, kill_at: str | None = None, count: int = 2
) -> subprocess.CompletedProcess:
    """`run_sweep(clips(COUNT, 1), name=NAME)` as a script in its own process, SIGKILLed at the
    launch's `kill_at` (`contract.TEST_LAUNCHER_KILL_AT`) when given."""
    script = project / "sweep.py"
    imports = "from tests.helpers import clips\nfrom musicsweep import run_sweep\n"
    script.write_text(f"{imports}run_sweep(clips({count}, 1), name={name!r})\n")
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop(TEST_LAUNCHER_KILL_AT, None)
    if kill_at:
        env[TEST_LAUNCHER_KILL_AT] = kill_at
    return subprocess.run([sys.executable, str(script)], cwd=project, env=env, capture_output=True, text=True)


def sweep_dir(name: str) -> SweepDir:
    return SweepDir(load_config().sweeps_dir, name)


def launch_and_wait(vg: VariantGenerator, name: str, timeout_s: float = 240) -> None:
    """Launch on the local backend and wait until the worker script has exited."""
    run_sweep(vg, name=name)
    wait_for_exit(int(sweep_dir(name).worker(0).pid.read_text()), timeout_s)


def worker_log(name: str, worker: int = 0) -> str:
    """Every attempt's log of worker `worker` (one file per launch), in launch order."""
    sweep = sweep_dir(name)
    logs = [sweep.worker(worker, launch).log for launch in sweep.read_manifest().launch_ids()]
    return "".join(log.read_text() for log in logs if log.exists())


def latest_log(sweep: SweepDir, worker: int = 0) -> Path:
    """Worker `worker`'s log file of the sweep's latest launch, where a host with the sweep folder writes it."""
    return sweep.worker(worker, sweep.read_manifest().launch_ids()[-1]).log


def exit_statuses(log_text: str) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in log_text.splitlines() if "worker exited with status" in line]


def assert_intact(store: Store, jobs: list[Job], log_text: str) -> None:
    """Every clip once, whole, with one cost row and `.done`, generated once."""
    sweep = jobs[0].sweep
    keys = store.list(f"{sweep}/")
    folder = {kind: sorted(k for k in keys if k.startswith(f"{sweep}/{kind}/")) for kind in ("audio", "costs")}
    assert folder["audio"] == sorted(f"{sweep}/audio/{job.output_name}" for job in jobs)
    assert folder["costs"] == sorted(f"{sweep}/costs/{job.job_id}.json" for job in jobs)
    for job in jobs:
        data = store.get_bytes(f"{sweep}/audio/{job.output_name}")
        with wave.open(io.BytesIO(data)) as handle:
            rate, channels, frames = handle.getframerate(), handle.getnchannels(), handle.getnframes()
        assert (rate, channels, frames) == (32000, 1, round(job.duration_s * 32000)), job.output_name
        assert len(data) == 44 + 2 * frames
        assert store.get_json(f"{sweep}/costs/{job.job_id}.json")["s3_filename"] == job.output_name
        assert f"{sweep}/markers/{job.job_id}.done" in keys
    assert [log_text.count(f"generated {job.output_name}\n") for job in jobs] == [1] * len(jobs)


def kill_then_rerun(
    vg: VariantGenerator,
    name: str,
    kill_at: str,
    monkeypatch: pytest.MonkeyPatch,
    between: Callable[[Store, list[Job], str], None],
) -> tuple[list[Job], Store, str, str]:
    """Launch with the worker SIGKILLed at `kill_at` and check it died there; `between(store, jobs,
    first log)` checks what the kill left (and may change the config); launch again. Returns the
    jobs, the store, the first log and the whole log."""
    jobs = jobs_from_variants(vg.variants(), name)
    store = open_store(load_config().store)
    monkeypatch.setenv(TEST_KILL_AT, kill_at)
    launch_and_wait(vg, name)
    first = worker_log(name)
    assert exit_statuses(first) == [128 + signal.SIGKILL]
    between(store, jobs, first)
    monkeypatch.delenv(TEST_KILL_AT)
    launch_and_wait(vg, name)
    return jobs, store, first, worker_log(name)


SLURM_SETTINGS = {
    "partition": "debug",
    "cpus_per_task": 1,
    "time": "10:00",
    "array_parallelism": 2,
    "hourly_cost_usd": 1.5,
    "prepare": ["export MUSICSWEEP_PREPARED=yes", 'echo "prepared: $MUSICSWEEP_PREPARED"'],
    "sbatch_lines": ["--comment=musicsweep-test", "#SBATCH --nice=0"],
}


def write_slurm_config(project: Path, engine_batch_size: int = 4, store: object = "./runs", **slurm: object) -> None:
    config = {
        "backend": "slurm",
        "store": store,
        "sweeps_dir": "./runs",
        "engine": {"batch_size": engine_batch_size},
        "backends": {"slurm": {**SLURM_SETTINGS, **slurm}},
    }
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))


def write_ray_config(project: Path, cluster: RayTestCluster, **settings: object) -> None:
    """A ray-backend musicsweep.yaml for the session cluster: two workers of one logical GPU, this venv's Python."""
    ray = {"address": cluster.address, "workers": 2, "num_gpus": 1, "num_cpus": 0, "hourly_cost_usd": 0.5}
    config = {
        "backend": "ray",
        "store": "./runs",
        "sweeps_dir": "./runs",
        "engine": {"batch_size": 4},
        "backends": {"ray": ray | {"python": sys.executable} | settings},
    }
    (project / "musicsweep.yaml").write_text(yaml.safe_dump(config))


def write_s3_config(project: Path, store_url: str, endpoint_url: str, batch_size: int = 4) -> None:
    """A local-backend musicsweep.yaml whose store is a bucket on a loopback S3 server."""
    (project / "musicsweep.yaml").write_text(
        f"backend: local\n"
        f"store:\n  url: {store_url}\n  endpoint_url: {endpoint_url}\n  region: us-east-1\n"
        f"sweeps_dir: ./runs\nengine:\n  batch_size: {batch_size}\n"
        f"backends:\n  local:\n    workers: 1\n    hourly_cost_usd: 0.5\n"
    )


def open_bucket_store(bucket: S3Bucket) -> S3Store:
    """The bucket as the launcher and workers see it."""
    return S3Store(StoreConfig(bucket.url, endpoint_url=bucket.server.endpoint_url, region="us-east-1"))


def ec2_variants(count: int, duration_s: float) -> list[dict]:
    return [
        {"prompt": f"warm rhodes chords {i}", "duration_s": duration_s, "model": "tiny", "seed": i}
        for i in range(count)
    ]


def uploaded_log(ec2_project: EC2Project, name: str, worker: int) -> str:
    """The log the last instance that ran worker `worker` uploaded (each launch's attempt has its own key)."""
    keys = set(ec2_project.s3_keys(f"{name}/logs/"))
    logs = [StoreKeys(name).log(worker, launch) for launch in reversed(sweep_dir(name).read_manifest().launch_ids())]
    key = "musicsweep/" + next(log for log in logs if log in keys)
    return (
        ec2_project.bucket.server.client().get_object(Bucket=ec2_project.bucket.name, Key=key)["Body"].read().decode()
    )


def generated_hashes(ec2_project: EC2Project, name: str, worker: int = 0) -> list[str]:
    """The hash8 of every `generated NAME` line in the log of worker `worker` the last instance uploaded.

    Claims are not generations: a worker stopped by a spot notice releases the clips it had claimed
    ahead for its next batch, and the relaunched worker claims them again (a second generation of the
    claim, one generation of the audio). A relaunched worker N uploads its log to a key of its own."""
    lines = [line for line in uploaded_log(ec2_project, name, worker).splitlines() if "] generated " in line]
    return [line.rsplit("_", 1)[-1].removesuffix(".wav") for line in lines]


def assert_each_clip_once(ec2_project: EC2Project, name: str, job_ids: set[str], generated: list[str]) -> None:
    """Every clip is in the store, was generated exactly once, and is marked done."""
    keys = ec2_project.s3_keys(f"{name}/")
    hashes = {job_id[:8] for job_id in job_ids}
    assert {k.rsplit("_", 1)[-1].removesuffix(".wav") for k in keys if k.startswith(f"{name}/audio/")} == hashes
    assert sorted(generated) == sorted(hashes)
    assert {k.rsplit("/", 1)[-1] for k in keys if k.endswith(".done")} == {f"{j}.done" for j in job_ids}
