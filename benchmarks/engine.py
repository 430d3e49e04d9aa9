"""Engine benchmarks: batching gain, long-form cost scaling, and real-size timings.

    uv run python benchmarks/engine.py                      # tiny model: batching ratios and 300 s / 30 s
    uv run python benchmarks/engine.py --real-size          # + random musicgen-small-sized model, 5 s clips
    uv run python benchmarks/engine.py --real-size --device cuda --real-batches 1 8 32 --static-cache --compile

Every figure is the median of `--repeats` runs. Targets (tiny model, 2 CPU cores): batched
throughput at batch 8 at least 2.5x one-clip-at-a-time, and time(300 s) / time(30 s) at most 10.5.
Results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from musicsweep.config import EngineConfig  # noqa: E402
from musicsweep.engine import MusicEngine, load_engine  # noqa: E402
from musicsweep.engine.loading import LoadedModel, pick_device  # noqa: E402
from musicsweep.job import GenerationParams  # noqa: E402

PROMPTS = ["lofi hip hop with warm piano", "epic orchestral trailer", "minimal techno", "ambient drone"]
PARAMS = GenerationParams()


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def median_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each run; the runs take turns, so a burst of load on a shared host hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run))
    return {name: statistics.median(values) for name, values in times.items()}


def clips(count: int) -> tuple[list[str], list[int]]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(count)], list(range(count))


def generate_in_batches(engine: MusicEngine, count: int, batch: int, duration_s: float) -> None:
    prompts, seeds = clips(count)
    for start in range(0, count, batch):
        engine.generate(prompts[start : start + batch], seeds[start : start + batch], duration_s, PARAMS)


def bench_batching(engine: MusicEngine, sizes: list[int], count: int, duration_s: float, repeats: int) -> None:
    """The same `count` clips, generated one at a time and in batches; throughput in audio s per wall s."""
    print(f"\nbatching: {count} clips of {duration_s:g} s, median of {repeats}")
    print(f"{'batch':>5} {'wall s':>8} {'audio s/s':>10} {'vs batch 1':>10}")
    runs = {str(size): lambda size=size: generate_in_batches(engine, count, size, duration_s) for size in sizes}
    walls = median_times(runs, repeats)
    baseline = count * duration_s / walls[str(sizes[0])]
    for size in sizes:
        throughput = count * duration_s / walls[str(size)]
        print(f"{size:>5} {walls[str(size)]:>8.2f} {throughput:>10.2f} {throughput / baseline:>9.2f}x")


def bench_longform(engine: MusicEngine, long_s: float, short_s: float, repeats: int) -> None:
    print(f"\nlong-form scaling: one clip, median of {repeats}")
    runs = {
        "short": lambda: engine.generate(PROMPTS[:1], [0], short_s, PARAMS),
        "long": lambda: engine.generate(PROMPTS[:1], [0], long_s, PARAMS),
    }
    walls = median_times(runs, repeats)
    short, long = walls["short"], walls["long"]
    print(f"time({short_s:g} s) = {short:.2f} s, time({long_s:g} s) = {long:.2f} s, ratio {long / short:.2f}")


def real_size_engine(dtype_name: str, device: str, threads: int) -> MusicEngine:
    import torch

    from musicsweep.engine.tiny import build_small_sized_model

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    started = time.perf_counter()
    model, tokenizer = build_small_sized_model(dtype)
    model.to(device).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    elapsed = time.perf_counter() - started
    print(f"built random musicgen-small-sized model ({params:.0f}M parameters, {dtype_name}) in {elapsed:.1f}s")
    return MusicEngine(LoadedModel("small-sized", model, tokenizer, device, dtype), EngineConfig())


def bench_real_size(args: argparse.Namespace, device: str) -> None:
    import torch

    print(
        f"\nreal size: {args.real_clip_s:g} s clips on {device}, guidance 3.0, top_k 250, median of {args.real_repeats}"
    )
    header = ("dtype", "static", "compile", "batch", "wall s", "ms/step", "x realtime", "clips/h")
    print(" ".join(f"{name:>{width}}" for name, width in zip(header, (9, 6, 7, 5, 8, 8, 10, 8), strict=True)))
    for dtype_name in args.real_dtypes:
        engine = real_size_engine(dtype_name, device, args.threads)
        if args.static_cache:
            engine.generate_options["cache_implementation"] = "static"
        if args.compile:
            decoder = engine.loaded.model.decoder
            decoder.forward = torch.compile(decoder.forward)
        steps = int(args.real_clip_s * engine.loaded.frame_rate) + engine.loaded.num_codebooks - 1
        for batch in args.real_batches:
            engine.generate(*clips(batch), 1.0, PARAMS)  # warm-up (and compilation)
            run = {"real": lambda engine=engine, batch=batch: engine.generate(*clips(batch), args.real_clip_s, PARAMS)}
            wall = median_times(run, args.real_repeats)["real"]
            realtime = batch * args.real_clip_s / wall
            print(
                f"{dtype_name:>9} {str(args.static_cache):>6} {str(args.compile):>7} {batch:>5} {wall:>8.1f} "
                f"{1000 * wall / steps:>8.0f} {realtime:>10.3f} {3600 * batch / wall:>8.0f}"
            )


def describe_host() -> str:
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}, {os.cpu_count()} CPUs, load average {load:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--clip-s", type=float, default=5.0, help="clip length for the batching comparison")
    parser.add_argument("--long-s", type=float, default=300.0)
    parser.add_argument("--short-s", type=float, default=30.0)
    parser.add_argument("--skip-tiny", action="store_true", help="only the real-size part")
    parser.add_argument("--real-size", action="store_true", help="also time a random musicgen-small-sized model")
    parser.add_argument("--real-batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--real-dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--real-clip-s", type=float, default=5.0)
    parser.add_argument("--real-repeats", type=int, default=1)
    parser.add_argument("--static-cache", action="store_true", help="static KV cache (real size)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the decoder step (real size)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for real size")
    args = parser.parse_args(argv)
    device = pick_device(EngineConfig(device=args.device))
    print(f"host: {describe_host()}; device {device}")
    if not args.skip_tiny:
        engine = load_engine("tiny", EngineConfig(device=device, batch_size=max(args.batches)))
        engine.generate(PROMPTS[:1], [0], 1.0, PARAMS)  # warm-up
        bench_batching(engine, args.batches, max(args.batches), args.clip_s, args.repeats)
        bench_longform(engine, args.long_s, args.short_s, args.repeats)
    if args.real_size:
        bench_real_size(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
