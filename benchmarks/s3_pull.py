"""Time the S3 store's hot paths on moto_server and s3rver (real HTTP on 127.0.0.1).

    uv run python benchmarks/s3_pull.py [--clips 200] [--claims 20]

For a sweep of N finished clips (a 64 KB WAV, a cost row and a `.done` each) it measures the
plan-time check (target: one listing, no HEAD per job), a first pull of everything, a second pull
(target: no download at all), and the latency of one claim (`put_new`): conditional where the
server honours `If-None-Match: *`, HEAD + PUT + read-back where it does not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicsweep.config import StoreConfig  # noqa: E402
from musicsweep.job import Job  # noqa: E402
from musicsweep.layout import SweepDir  # noqa: E402
from musicsweep.store.pull import pull_results  # noqa: E402
from musicsweep.store.s3 import S3Store  # noqa: E402
from musicsweep.sweep.plan import finished_in_store  # noqa: E402
from tests.fixtures.s3 import REPO_ROOT, S3Server  # noqa: E402
from tests.fixtures.servers import child_process, free_port, port_open  # noqa: E402


def start_servers(stack: ExitStack, folder: Path) -> list[S3Server]:
    moto_port, s3rver_port = free_port(), free_port()
    moto = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)]
    s3rver = [shutil.which("node") or "node", "--openssl-legacy-provider", str(REPO_ROOT / "node_modules/.bin/s3rver")]
    s3rver += ["-d", str(folder / "s3rver"), "-a", "127.0.0.1", "-p", str(s3rver_port), "-s"]
    stack.enter_context(child_process(moto, folder / "moto.log", lambda: port_open("127.0.0.1", moto_port), "moto"))
    ready = lambda: port_open("127.0.0.1", s3rver_port)  # noqa: E731
    stack.enter_context(child_process(s3rver, folder / "s3rver.log", ready, "s3rver"))
    return [
        S3Server("moto", f"http://127.0.0.1:{moto_port}"),
        S3Server("s3rver", f"http://127.0.0.1:{s3rver_port}", "S3RVER", "S3RVER"),
    ]


def count_calls(store: S3Store) -> Counter:
    calls: Counter = Counter()
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
    return calls


def bench(server: S3Server, folder: Path, clips: int, claims: int) -> None:
    os.environ |= {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    server.client().create_bucket(Bucket="bench")
    store = S3Store(StoreConfig("s3://bench/prefix", endpoint_url=server.endpoint_url, region="us-east-1"))
    sweep = SweepDir(folder / server.kind, "bench")
    jobs = [Job("bench", f"prompt {i}", 5.0, "tiny", i, f"clip{i}") for i in range(clips)]
    wav = os.urandom(64 * 1024)
    for job in jobs:
        paths = sweep.job(job)
        store.put_bytes(paths.audio_key, wav)
        store.put_json(paths.cost_key, {"job_id": job.job_id})
        store.put_bytes(paths.done_key, b"done\n")

    calls = count_calls(store)
    started = time.perf_counter()
    finished = finished_in_store(store, jobs, sweep)
    plan_s = time.perf_counter() - started
    assert len(finished) == clips
    print(f"{server.kind}: plan check of {clips} jobs: {plan_s * 1000:.0f} ms, calls {dict(calls)}")

    for label in ("first pull", "second pull"):
        calls.clear()
        started = time.perf_counter()
        copied = pull_results(store, sweep)
        print(f"{server.kind}: {label}: {copied} objects in {time.perf_counter() - started:.2f} s, calls {dict(calls)}")

    latencies = []
    for index in range(claims):
        started = time.perf_counter()
        store.put_new(f"bench/claims/{index}", b"me")
        latencies.append(time.perf_counter() - started)
    mode = "If-None-Match" if store.conditional_writes else "fallback (HEAD + PUT + read-back)"
    print(f"{server.kind}: claim via {mode}: median {statistics.median(latencies[1:]) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--claims", type=int, default=20)
    args = parser.parse_args()
    os.environ |= {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for server in start_servers(stack, Path(tmp)):
            bench(server, Path(tmp), args.clips, args.claims)


if __name__ == "__main__":
    main()
