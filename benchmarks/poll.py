"""Time one auto_pull poll of 200 finished jobs on 2 SSH hosts (real sshd on 127.0.0.2/3).

    uv run python benchmarks/poll.py [--jobs 200] [--repeat 10]

Finished jobs are faked on the remote roots (a dead pid file and a `.done` marker per job), so
only the poll itself is measured. Prints the SSH round trips per poll (target: 2, one per host)
and the median poll time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicsweep.backends.ssh import SSHBackend, SSHHosts  # noqa: E402
from musicsweep.config import parse_config  # noqa: E402
from musicsweep.job import Job  # noqa: E402
from musicsweep.layout import SweepDir  # noqa: E402
from musicsweep.manifest import JobEntry, Manifest  # noqa: E402
from musicsweep.remote.ssh import CONNECTIONS  # noqa: E402
from musicsweep.states import JobState  # noqa: E402
from tests.fixtures.sshd import SSHServer, make_keys  # noqa: E402

DEAD_PID = 2**22 + 1  # above the default pid_max: never a live process


def fake_finished_sweep(folder: Path, servers: list[SSHServer], count: int) -> tuple[SSHBackend, SweepDir, Manifest]:
    hosts = [server.host() for server in servers]
    raw = {"backend": "ssh", "backends": {"ssh": {"hosts": [server.entry() for server in servers]}}}
    config = parse_config(raw, "benchmark", folder)
    sweep = SweepDir(config.sweeps_dir, "bench")
    manifest = Manifest(sweep="bench", backend="ssh")
    manifest.keep_state(SSHHosts({host.label: host for host in hosts}))
    for index in range(count):
        job = Job("bench", f"prompt {index}", 2.0, "tiny", index, f"clip_{index}")
        host = hosts[index % len(hosts)]
        manifest.jobs[job.job_id] = JobEntry(worker=index % len(hosts), host=host.label)
        work = Path(host.work_dir(sweep.name))
        for sub in ("jobs", "markers"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        (work / "jobs" / f"{job.job_id}.pid").write_text(f"{DEAD_PID} {DEAD_PID}\n")
        (work / "markers" / f"{job.job_id}.done").write_text("done\n")
    return SSHBackend(config), sweep, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        keys = make_keys(folder / "keys")
        servers = [SSHServer(address, folder / address, keys) for address in ("127.0.0.2", "127.0.0.3")]
        try:
            for server in servers:
                server.start()
            backend, sweep, manifest = fake_finished_sweep(folder, servers, args.jobs)
            times, trips = [], []
            for _ in range(args.repeat):
                CONNECTIONS.reset()
                started = time.perf_counter()
                states = backend.poll(sweep, manifest)
                times.append(time.perf_counter() - started)
                trips.append(CONNECTIONS.total())
                assert len(states) == args.jobs and set(states.values()) == {JobState.DONE}, states
        finally:
            for server in servers:
                server.stop()
    print(f"poll of {args.jobs} finished jobs on {len(servers)} hosts, {args.repeat} runs")
    print(f"ssh round trips per poll: {max(trips)} (target: {len(servers)})")
    print(f"median poll time: {statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
