"""One harness per backend for the conformance suite (tests/test_backend_conformance.py).

A harness starts the backend's real part from the shared fixtures (tests/fixtures/), writes a
musicsweep.yaml whose worker is the stand-in (`standin_worker.py`, behind a `python` wrapper that
forwards every other `python ...` call to this venv's interpreter), and does what the real world
would do around it: hold submitted work back, kill a worker, make a host go away, and, for cloud
backends, play the provider (a terminated instance or pod takes its processes with it).

Everything else the suite asserts goes through the `Backend` interface itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import boto3
import pytest
import yaml

from musicsweep.backends import get_backend
from musicsweep.backends.base import Backend
from musicsweep.config import load_config
from musicsweep.layout import SweepDir
from musicsweep.states import JobState
from musicsweep.sweep.launch import launch
from musicsweep.sweep.plan import Plan, jobs_from_variants, make_plan
from tests.conformance.standin_worker import CONTROL_ENV
from tests.fixtures.servers import free_port, kill_processes, processes_mentioning, wait_until

STANDIN = Path(__file__).with_name("standin_worker.py")
Observer = Callable[[dict[str, JobState]], None]

WRAPPER = """#!/usr/bin/env bash
# `python` for the conformance suite: the worker is the stand-in, anything else this venv's Python.
if [ "${{1:-}}" = -m ] && [ "${{2:-}}" = musicsweep.worker ]; then
  shift 2
  export {control_env}={control}
  exec {python} {standin} "$@"
fi
exec {python} "$@"
"""


def write_wrapper(path: Path, control: Path) -> str:
    path.write_text(
        WRAPPER.format(
            control_env=CONTROL_ENV,
            control=shlex.quote(str(control)),
            python=shlex.quote(sys.executable),
            standin=shlex.quote(str(STANDIN)),
        )
    )
    path.chmod(0o755)
    return str(path)


def clips(count: int) -> list[dict]:
    return [{"prompt": f"conformance clip {i}", "duration_s": 1, "model": "tiny", "seed": i} for i in range(count)]


class BackendHarness:
    """The common part: the stand-in's control folder, launching, polling, the worker records."""

    name: ClassVar[str]
    workers: ClassVar[int] = 2
    # Why the backend has no `pending` phase the suite can hold, or None when it has one.
    no_pending_phase: ClassVar[str | None] = None
    # Why no host of this backend can go away, or None when one can.
    no_lost_host: ClassVar[str | None] = None
    # The one-per-machine server fixture it starts (tests/tiers.py: ONE_PER_MACHINE), if any.
    server: ClassVar[str | None] = None

    def __init__(self, request: pytest.FixtureRequest, project: Path, tmp_path: Path) -> None:
        self.request, self.project, self.tmp = request, project, tmp_path
        self.control = tmp_path / "control"
        self.control.mkdir()
        self.python = write_wrapper(tmp_path / "standin-python", self.control)
        self.sweeps: list[SweepDir] = []
        self._backend: Backend | None = None
        self.restore: Callable[[], None] | None = None
        self.start()
        self.configure()

    # ---- to override
    def start(self) -> None:
        """Start the real part (fixtures)."""

    def configure(self, **settings: object) -> None:
        raise NotImplementedError

    def write_config(self, backend: dict, store: object = "./runs") -> None:
        config = {
            "backend": self.name,
            "store": store,
            "sweeps_dir": "./runs",
            "engine": {"batch_size": 1},
            "backends": {self.name: backend},
        }
        (self.project / "musicsweep.yaml").write_text(yaml.safe_dump(config))

    def submit_held(self, plan: Plan, observe: Observer) -> None:
        """Launch `plan`, calling `observe` with a poll while its work is submitted but not started.

        By default that is the moment the launcher has written the manifest and calls submit:
        the backend's worker is a plain process, pending until it exists."""
        original = plan.backend.submit

        def submit(launch_, shards):
            observe(self.fresh_backend().poll(plan.sweep, plan.sweep.read_manifest()))
            return original(launch_, shards)

        plan.backend.submit = submit
        launch(plan, load_config())

    def after_launch(self, plan: Plan) -> None:
        """Whatever the real world does once a launch returns (EC2: the instances boot)."""

    def play_provider(self, sweep: SweepDir) -> None:
        """Before each poll: what the provider does on its own (cloud backends)."""

    def lose_host(self, record: dict) -> set[str]:
        """Make the host of the worker in `record` go away; returns the job ids that lose it."""
        raise NotImplementedError

    def match_strings(self, sweep: SweepDir) -> list[str]:
        """Folders that only this test's workers of `sweep` name (their work folders, the control folder)."""
        return [str(self.control), str(sweep.root)]

    def live_executors(self, sweep: SweepDir) -> list[str]:
        """What still runs (and bills) for the sweep: processes by default."""
        return [f"pid {pid}" for pid in processes_mentioning(self.match_strings(sweep))]

    def teardown_extra(self, sweep: SweepDir) -> None:
        """Anything beyond cancel and killing leftover processes."""

    # ---- common
    def backend(self) -> Backend:
        """One backend object for the whole test, as auto_pull keeps one."""
        if self._backend is None:
            self._backend = get_backend(self.name, load_config())
        return self._backend

    def fresh_backend(self) -> Backend:
        return get_backend(self.name, load_config())

    def launch(self, name: str, count: int = 4, observe_pending: Observer | None = None) -> Plan:
        config = load_config()
        plan = make_plan(jobs_from_variants(clips(count), name), config, name)
        assert len(plan.shards) == self.workers and all(
            len(shard.jobs) == count // self.workers for shard in plan.shards
        )
        self.sweeps.append(plan.sweep)
        if observe_pending is None:
            launch(plan, config)
        else:
            self.submit_held(plan, observe_pending)
        self.after_launch(plan)
        return plan

    def release(self, linger: bool = False) -> None:
        """Let every stand-in write its clips; with `linger` they live on after (orphans)."""
        if linger:
            (self.control / "linger").touch()
        (self.control / "release").touch()

    def started_workers(self, sweep: SweepDir, timeout_s: float = 60) -> list[dict]:
        """The stand-ins of the sweep's latest launch, once all of them have started (by worker id)."""
        launch_id = sweep.read_manifest().launches[-1].id
        paths = lambda: sorted(self.control.glob(f"worker-{launch_id}-*.json"))  # noqa: E731
        wait_until(lambda: len(paths()) == self.workers, timeout_s, f"{self.workers} stand-in workers")
        records = [json.loads(path.read_text()) for path in paths()]
        return sorted(records, key=lambda record: record["worker_id"])

    def poll(self, sweep: SweepDir) -> dict[str, JobState]:
        self.play_provider(sweep)
        return self.backend().poll(sweep, sweep.read_manifest())

    def poll_until(
        self, sweep: SweepDir, settled: Callable[[dict[str, JobState]], bool], timeout_s: float = 60
    ) -> dict[str, JobState]:
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.poll(sweep)
            if settled(states):
                return states
            assert time.monotonic() < deadline, f"states did not settle within {timeout_s}s: {states}"
            time.sleep(0.3)

    def kill_worker(self, record: dict) -> None:
        """SIGKILL the worker process itself (as the OOM killer would); its script lives on."""
        os.kill(record["pid"], signal.SIGKILL)

    def machine_gone(self, record: dict) -> bool:
        """Whether the killed worker's executor has ended (cloud backends: its machine is terminated)."""
        return record["pid"] not in processes_mentioning([str(self.control)])

    def wait_no_executor(self, sweep: SweepDir, timeout_s: float = 30) -> list[str]:
        """What is still live after up to `timeout_s` (an empty list once everything has ended)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.play_provider(sweep)
            left = self.live_executors(sweep)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.3)

    def teardown(self) -> None:
        if self.restore is not None:
            self.restore()
        for sweep in self.sweeps:
            if sweep.manifest.exists():
                with contextlib.suppress(Exception):
                    self.fresh_backend().cancel(sweep, sweep.read_manifest())
            with contextlib.suppress(Exception):
                self.play_provider(sweep)
            self.teardown_extra(sweep)
            kill_processes(self.match_strings(sweep))


class LocalHarness(BackendHarness):
    """Workers on this machine. Their scripts are children of this test process, which never waits
    for them: a reaper thread plays init (as for a launcher that has exited), so an ended script is
    not left a zombie that keeps its process group looking alive."""

    name = "local"
    no_lost_host = "the local backend's only host is the launcher's own machine: it cannot go away"

    def start(self) -> None:
        self.reaping = threading.Event()
        self.reaper = threading.Thread(target=self.reap, name="local-worker-reaper", daemon=True)
        self.reaper.start()

    def reap(self) -> None:
        while not self.reaping.wait(0.1):
            for sweep in list(self.sweeps):
                for path in sweep.root.glob("scripts/worker_*.pid"):
                    with contextlib.suppress(ChildProcessError, ValueError):
                        os.waitpid(int(path.read_text()), os.WNOHANG)

    def teardown(self) -> None:
        super().teardown()
        self.reaping.set()
        self.reaper.join(5)

    def configure(self, **settings: object) -> None:
        self.write_config({"workers": self.workers, "hourly_cost_usd": 0.5, "python": self.python, **settings})


class SSHHarness(BackendHarness):
    """Two loopback sshd hosts, one worker each."""

    name = "ssh"

    def start(self) -> None:
        self.servers = self.request.getfixturevalue("ssh_hosts")

    def configure(self, **settings: object) -> None:
        hosts = [server.entry(python=self.python) for server in self.servers]
        self.write_config({"hosts": hosts, "kill_grace_s": 2, **settings})

    def match_strings(self, sweep: SweepDir) -> list[str]:
        return [str(self.control), *(str(server.root / "remote") for server in self.servers)]

    def lose_host(self, record: dict) -> set[str]:
        (server,) = [s for s in self.servers if record["work_dir"].startswith(str(s.root))]
        server.stop()

        def restore() -> None:
            server.start()
            self.restore = None

        self.restore = restore
        return set(record["jobs"])


class SlurmHarness(BackendHarness):
    """The real single-node cluster; its pending phase is a held array (`--hold`)."""

    name = "slurm"
    server = "slurm_cluster"

    def start(self) -> None:
        self.cluster = self.request.getfixturevalue(self.server)
        self.cluster.cancel_all()

    def configure(self, **settings: object) -> None:
        base = {"partition": self.cluster.partition, "time": "10:00", "shards": self.workers, "python": self.python}
        self.write_config(base | settings)

    def submit_held(self, plan: Plan, observe: Observer) -> None:
        self.configure(sbatch_lines=["--hold"])
        try:
            launch(plan, load_config())
        finally:
            self.configure()
        observe(self.fresh_backend().poll(plan.sweep, plan.sweep.read_manifest()))
        (array,) = plan.sweep.read_manifest().backend_state["slurm_arrays"].values()
        released = self.cluster.run("scontrol", "release", array["array_job_id"])
        assert released.returncode == 0, released.stderr

    def lose_host(self, record: dict) -> set[str]:
        """The controller stops answering this machine: its clients now talk to a closed port."""
        dead = self.tmp / "slurm-unreachable.conf"
        text = self.cluster.conf.read_text()
        text = re.sub(r"^SlurmctldPort=\d+$", f"SlurmctldPort={free_port()}", text, flags=re.M)
        dead.write_text(text + "MessageTimeout=1\n")  # give up on it within seconds
        os.environ["SLURM_CONF"] = str(dead)

        def restore() -> None:
            os.environ["SLURM_CONF"] = str(self.cluster.conf)
            self.restore = None

        self.restore = restore
        return set(self.sweeps[-1].read_manifest().jobs)  # one controller for every task

    def live_executors(self, sweep: SweepDir) -> list[str]:
        queued = self.cluster.run("squeue", "--noheader", "--states=PD,R,CG,S", "--format=%i %T").stdout.split("\n")
        return super().live_executors(sweep) + [f"task {line}" for line in queued if line.strip()]

    def teardown_extra(self, sweep: SweepDir) -> None:
        self.cluster.cancel_all()


class EC2Harness(BackendHarness):
    """moto's EC2 and S3; each instance's user data runs in its own sandbox on this machine."""

    name = "ec2"
    no_pending_phase = (
        "moto's instances are `running` from the moment they are created, so the EC2 API stand-in "
        "never shows a `pending` instance"
    )

    def start(self) -> None:
        self.ec2 = self.request.getfixturevalue("ec2_project")
        self.client = boto3.client("ec2", endpoint_url=self.ec2.bucket.server.endpoint_url, region_name="us-east-1")
        self.sandboxes: dict[str, tuple[object, subprocess.Popen]] = {}

    def configure(self, **settings: object) -> None:
        self.ec2.configure(instances=self.workers, **settings)

    def submit_held(self, plan: Plan, observe: Observer) -> None:
        raise AssertionError(self.no_pending_phase)

    def after_launch(self, plan: Plan) -> None:
        """The instances boot: each runs its user data, with the stand-in as its worker."""
        from tests.fixtures.ec2 import make_sandbox

        backend = self.backend()
        for instance in backend.instances(plan.sweep.name, ("pending", "running")):
            instance_id = instance["InstanceId"]
            if instance_id not in self.sandboxes:
                sandbox = make_sandbox(self.tmp / f"sandbox-{instance_id}", self.python)
                self.sandboxes[instance_id] = (sandbox, sandbox.start(backend, instance_id))

    def instance_states(self, sweep: SweepDir) -> dict[str, str]:
        response = self.client.describe_instances(Filters=[{"Name": "instance-id", "Values": list(self.sandboxes)}])
        return {i["InstanceId"]: i["State"]["Name"] for r in response["Reservations"] for i in r["Instances"]}

    def play_provider(self, sweep: SweepDir) -> None:
        """A script that ran `shutdown -h now` terminates its instance (InstanceInitiatedShutdownBehavior),
        and a terminated instance takes its processes with it."""
        if not self.sandboxes:
            return
        for instance_id, (sandbox, process) in self.sandboxes.items():
            log = sandbox.shutdown_log
            if process.poll() is not None and log.exists() and "-h now" in log.read_text():
                self.client.terminate_instances(InstanceIds=[instance_id])
        for instance_id, state in self.instance_states(sweep).items():
            process = self.sandboxes[instance_id][1]
            if state in ("shutting-down", "terminated") and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def instance_of(self, record: dict) -> str:
        for instance in self.backend().instances(self.sweeps[-1].name):
            tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
            if (tags.get("musicsweep-launch"), tags.get("musicsweep-worker")) == (
                record["launch_id"],
                str(record["worker_id"]),
            ):
                return instance["InstanceId"]
        raise AssertionError(f"no instance for {record}")

    def machine_gone(self, record: dict) -> bool:
        self.play_provider(self.sweeps[-1])
        return self.instance_states(self.sweeps[-1])[self.instance_of(record)] in ("shutting-down", "terminated")

    def lose_host(self, record: dict) -> set[str]:
        """The instance drops out of the API's answers (as terminated instances do after a while)."""
        instance_id = self.instance_of(record)
        tag = {"Key": "musicsweep-sweep", "Value": self.sweeps[-1].name}
        self.client.delete_tags(Resources=[instance_id], Tags=[tag])

        def restore() -> None:
            self.client.create_tags(Resources=[instance_id], Tags=[tag])
            self.restore = None

        self.restore = restore
        return set(record["jobs"])

    def match_strings(self, sweep: SweepDir) -> list[str]:
        return [
            str(self.control),
            str(self.ec2.instance_root),
            *(str(self.tmp / f"sandbox-{i}") for i in self.sandboxes),
        ]

    def live_executors(self, sweep: SweepDir) -> list[str]:
        """Instances that still run (and bill); their processes end with them (`play_provider`)."""
        states = self.instance_states(sweep) if self.sandboxes else {}
        return [f"instance {i} {s}" for i, s in states.items() if s not in ("shutting-down", "terminated")]

    def teardown_extra(self, sweep: SweepDir) -> None:
        for _, process in self.sandboxes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class RunPodHarness(BackendHarness):
    """The GraphQL stand-in, whose pods' port 22 is a loopback sshd; results in S3 (moto)."""

    name = "runpod"

    def start(self) -> None:
        self.runpod = self.request.getfixturevalue("runpod_project")
        self.standin = self.runpod.standin

    def configure(self, **settings: object) -> None:
        self.runpod.configure(pods=self.workers, python=self.python, exit_grace_s=0, **settings)

    def submit_held(self, plan: Plan, observe: Observer) -> None:
        """Pods are created but not ready yet: the first readiness check is the moment."""
        backend = plan.backend
        original = backend.pods.answers_ssh
        observed: list[bool] = []

        def answers_ssh(record, pod):
            if not observed:
                observed.append(True)
                observe(self.fresh_backend().poll(plan.sweep, plan.sweep.read_manifest()))
            return original(record, pod)

        backend.pods.answers_ssh = answers_ssh
        launch(plan, load_config())

    def pod_records(self, sweep: SweepDir) -> list:
        from musicsweep.backends.runpod.ledger import PodLedger

        return list(PodLedger(sweep).pods.values())

    def pod_work_dir(self, record, sweep: SweepDir) -> str:
        return f"{record.host['remote_dir']}/runs/{sweep.name}"

    def play_provider(self, sweep: SweepDir) -> None:
        """A pod that exited or was terminated takes its processes with it."""
        for record in self.pod_records(sweep):
            pod = self.standin.pods.get(record.pod_id)
            if record.host and pod is not None and (pod.terminated or pod.desired_status != "RUNNING"):
                kill_processes([self.pod_work_dir(record, sweep), record.host["remote_dir"] + "/"])

    def pod_of(self, record: dict):
        (pod,) = [r for r in self.pod_records(self.sweeps[-1]) if record["work_dir"].startswith(r.host["remote_dir"])]
        return pod

    def machine_gone(self, record: dict) -> bool:
        return self.standin.pods[self.pod_of(record).pod_id].terminated

    def lose_host(self, record: dict) -> set[str]:
        """The pod's machine fails: the pod exits, its processes die with it."""
        pod = self.pod_of(record)
        self.standin.die(pod.pod_id)
        self.play_provider(self.sweeps[-1])
        return set(record["jobs"])

    def match_strings(self, sweep: SweepDir) -> list[str]:
        return [str(self.control), str(self.runpod.server.root / "pods")]

    def live_executors(self, sweep: SweepDir) -> list[str]:
        """Pods not terminated (an exited pod still bills for its disk); their processes end with them."""
        return [f"pod {pod.id} {pod.desired_status}" for pod in self.standin.live_pods()]


class RayHarness(BackendHarness):
    """The session's real Ray cluster (head + one node, two logical GPUs each), one GPU per worker.
    Its pending phase is the default one: the job is not recorded yet while submit runs."""

    name = "ray"
    server = "ray_cluster"

    def start(self) -> None:
        self.cluster = self.request.getfixturevalue(self.server)

    def started_workers(self, sweep: SweepDir, timeout_s: float = 240) -> list[dict]:
        """A job starts a supervisor, a driver and one process per actor: on a loaded 2-core
        machine that took over 60 s."""
        return super().started_workers(sweep, timeout_s)

    def configure(self, **settings: object) -> None:
        base = {"address": self.cluster.address, "workers": self.workers, "num_gpus": 1, "num_cpus": 0}
        self.write_config(base | {"python": self.python, "kill_grace_s": 2, **settings})

    def lose_host(self, record: dict) -> set[str]:
        """The cluster's address stops answering: every worker of the sweep is lost to the launcher."""
        self.cluster.cut()

        def restore() -> None:
            self.cluster.restore()
            self.restore = None

        self.restore = restore
        return set(self.sweeps[-1].read_manifest().jobs)

    def match_strings(self, sweep: SweepDir) -> list[str]:
        """The control folder, and the sweep's work folders on the nodes (guards and scripts)."""
        from musicsweep.backends.ray.host import WORK_FOLDER

        folders = [self.cluster.node_tmp(name) / WORK_FOLDER / sweep.name for name in ("head", "extra")]
        return [str(self.control), *(f"{folder}/" for folder in folders)]

    def live_executors(self, sweep: SweepDir) -> list[str]:
        """Processes, and actors of the sweep that Ray still runs."""
        from musicsweep.backends.ray.state import sweep_namespace

        actors = self.backend().cluster.actors(sweep_namespace(sweep.name))
        alive = [f"actor {name} {state}" for name, state in sorted(actors.items()) if state != "DEAD"]
        return super().live_executors(sweep) + alive


HARNESSES: dict[str, type[BackendHarness]] = {
    harness.name: harness for harness in (LocalHarness, SSHHarness, SlurmHarness, EC2Harness, RunPodHarness, RayHarness)
}
