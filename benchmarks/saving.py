"""Generator idle time between batches, with and without pipelined saving, uploading to moto_server over HTTP.

    uv run --extra worker python benchmarks/saving.py [--batches 6] [--batch-size 4] [--clip-s 2] [--repeats 3]

A real `Worker` (tiny model, loaded once) generates `batches` x `batch-size` clips into an S3 store
served by moto_server on 127.0.0.1, through the same retrying store a worker uses. Idle time is
the time from one `generate()` returning to the next one starting (claims, spooling and, when
saving is not pipelined, every upload), summed over the gaps; the final drain (after the last
`generate()`) is reported apart. "synchronous" drains the saver after every batch, which is what the
worker did before saving was pipelined. The configurations take turns (interleaved) and every
figure is the median over `--repeats`. Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from timing import PARAMS, PROMPTS, describe_host

from musicsweep.config import EngineConfig, StoreConfig
from musicsweep.engine import MusicEngine, load_engine
from musicsweep.engine.loading import LoadedModel
from musicsweep.job import Job
from musicsweep.store import open_store
from musicsweep.store.retry import RetryingStore
from musicsweep.worker.claims import Claims, owner_of
from musicsweep.worker.context import StopFlag, WorkerContext
from musicsweep.worker.loop import Worker
from tests.fixtures.s3 import REGION, S3Server
from tests.fixtures.servers import child_process, free_port, port_open

MODES = ("synchronous", "pipelined")


def start_moto(stack: contextlib.ExitStack, folder: Path) -> S3Server:
    port = free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    stack.enter_context(child_process(command, folder / "moto.log", lambda: port_open("127.0.0.1", port), "moto"))
    server = S3Server("moto", f"http://127.0.0.1:{port}")
    os.environ |= {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    os.environ |= {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    server.client().create_bucket(Bucket="bench")
    return server


def record_spans(owner: object, name: str) -> list[tuple[float, float]]:
    """Wrap `owner.name` (on this instance only) to record when each call starts and returns."""
    call, spans = getattr(owner, name), []

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spans.append((started, time.perf_counter()))

    setattr(owner, name, timed)
    return spans


def one_run(loaded: LoadedModel, server: S3Server, mode: str, run: int, args: argparse.Namespace) -> dict[str, float]:
    store = open_store(StoreConfig(f"s3://bench/run{run}", endpoint_url=server.endpoint_url, region=REGION))
    sweep = f"{mode}-{run}"
    with tempfile.TemporaryDirectory() as work:
        context = WorkerContext(
            work_dir=Path(work),
            store=RetryingStore(store, 300, print),
            worker_id=0,
            num_workers=1,
            hourly_cost_usd=1.0,
            is_restart=False,
            launch_id=sweep,
            engine_config=EngineConfig(batch_size=args.batch_size),
        )
        worker = Worker(context, StopFlag(), Claims(context.store, sweep, owner_of(context.host, sweep, 0)))
        worker.models.engines["tiny"] = engine = MusicEngine(loaded, context.engine_config)  # the model is loaded once
        generated, spooled = record_spans(engine, "generate"), record_spans(worker.delivery, "spool_clip")
        if mode == "synchronous":
            run_batch = worker.batches.run
            worker.batches.run = lambda batch: (run_batch(batch), worker.saver.drain())  # type: ignore[method-assign]
        count = args.batches * args.batch_size
        jobs = [Job(sweep, PROMPTS[i % len(PROMPTS)], args.clip_s, "tiny", i, f"clip{i}") for i in range(count)]
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            status = worker.run(jobs)
        wall = time.perf_counter() - started
    assert status == 0 and len(worker.tally.saved) == count, (status, len(worker.tally.saved))
    gaps = [nxt[0] - prev[1] for prev, nxt in zip(generated, generated[1:], strict=False)]
    return {
        "idle_s": sum(gaps),
        "gap_s": statistics.mean(gaps),
        "spool_ms_per_clip": 1000 * sum(end - start for start, end in spooled) / count,
        "drain_s": started + wall - generated[-1][1],
        "generate_s": sum(end - start for start, end in generated),
        "upload_s": worker.lifetime.times.upload_s,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--clip-s", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"host: {describe_host()}")
    print(
        f"{args.batches} batches of {args.batch_size} x {args.clip_s:g} s clips, tiny model, store: moto_server "
        f"on 127.0.0.1; median of {args.repeats} interleaved runs"
    )
    engine = load_engine("tiny", EngineConfig(device="cpu"))
    engine.generate(PROMPTS[:1], [0], 1.0, PARAMS)  # warm-up
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        server = start_moto(stack, Path(folder))
        for repeat in range(args.repeats):
            for mode in MODES:
                figures = one_run(engine.loaded, server, mode, repeat * len(MODES) + MODES.index(mode), args)
                results[mode].append(figures)
                print(f"  run {repeat + 1} {mode:<11} " + " ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    medians = {mode: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for mode, runs in results.items()}
    gaps = args.batches - 1
    print(f"\n{'mode':<12} " + " ".join(f"{name:>{len(name)}}" for name in medians["pipelined"]))
    for mode, figures in medians.items():
        print(f"{mode:<12} " + " ".join(f"{value:>{len(name)}.3f}" for name, value in figures.items()))
    ratio = medians["synchronous"]["idle_s"] / max(medians["pipelined"]["idle_s"], 1e-9)
    print(f"idle between batches ({gaps} gaps): synchronous / pipelined = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
