"""CPU engine benchmarks: musicsweep against plain generate, fast against hf, long-form scaling, real size.

    uv run python benchmarks/engine.py                         # tiny model
    uv run python benchmarks/engine.py --skip-tiny --real-size # random musicgen-small-sized model, bf16, batch 4
    uv run python benchmarks/engine.py --skip-tiny --modes     # stereo, audio prompt, melody (docs/modes.md)
    uv run python benchmarks/engine.py --skip-tiny --streams   # per-clip random streams against one shared stream

Every figure is the median of `--repeats` runs that take turns (interleaved), so load bursts on a
shared host hit every configuration alike. Targets (issue 18, 2 CPU cores): the tiny model's 8
clips of 5 s batched at least 6x plain `generate` one clip at a time; `fast` at least 1.2x `hf` on
the small-sized model in bfloat16 at batch 4. GPU figures: benchmarks/gpu.sh. Results are recorded
in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable

from timing import (
    MODES,
    PARAMS,
    PROMPTS,
    TOKEN_LOOPS,
    clips,
    codes_run,
    describe_host,
    engines,
    median_times,
    mode_inputs,
)

from musicsweep.config import EngineConfig
from musicsweep.engine import MusicEngine, load_engine
from musicsweep.engine.loading import LoadedModel, pick_device, torch_threads
from musicsweep.engine.streams import ClipStreams


def plain_generate(engine: MusicEngine, count: int, duration_s: float) -> None:
    """What a hand-written worker does: `generate` with transformers' own sampling, one clip at a time.

    It runs on the engine's thread count (one for the tiny model), so only batching and the decode
    loop differ.
    """
    import torch

    loaded = engine.loaded
    steps = int(duration_s * loaded.frame_rate) + loaded.num_codebooks - 1
    prompts, seeds = clips(count)
    with torch_threads(loaded.threads):
        for prompt, seed in zip(prompts, seeds, strict=True):
            torch.manual_seed(seed)
            inputs = loaded.tokenizer(text=[prompt], return_tensors="pt").to(loaded.device)
            loaded.model.generate(
                **inputs, do_sample=True, guidance_scale=PARAMS.guidance_scale, top_k=PARAMS.top_k, max_new_tokens=steps
            )


def generate_in_batches(engine: MusicEngine, count: int, batch: int, duration_s: float) -> None:
    prompts, seeds = clips(count)
    for start in range(0, count, batch):
        engine.generate(prompts[start : start + batch], seeds[start : start + batch], duration_s, PARAMS)


def bench_against_plain(by_loop: dict[str, MusicEngine], count: int, batch: int, clip_s: float, repeats: int) -> None:
    print(f"\n{count} clips of {clip_s:g} s: plain generate one at a time vs musicsweep at batch {batch}")
    print(f"median of {repeats} interleaved runs")
    plain_engine = next(iter(by_loop.values()))
    runs = {"plain generate, 1 at a time": lambda: plain_generate(plain_engine, count, clip_s)}
    for name, engine in by_loop.items():
        runs[f"musicsweep {name}, batch {batch}"] = lambda engine=engine: generate_in_batches(
            engine, count, batch, clip_s
        )
    walls = median_times(runs, repeats)
    plain = walls["plain generate, 1 at a time"]
    print(f"{'run':<30} {'wall s':>8} {'audio s/s':>10} {'vs plain':>9}")
    for name, wall in walls.items():
        print(f"{name:<30} {wall:>8.2f} {count * clip_s / wall:>10.2f} {plain / wall:>8.2f}x")


def bench_longform(by_loop: dict[str, MusicEngine], long_s: float, short_s: float, repeats: int) -> None:
    print(f"\nlong-form scaling: one clip, median of {repeats} interleaved runs")
    runs = {}
    for name, engine in by_loop.items():
        runs[(name, short_s)] = lambda engine=engine: engine.generate(PROMPTS[:1], [0], short_s, PARAMS)
        runs[(name, long_s)] = lambda engine=engine: engine.generate(PROMPTS[:1], [0], long_s, PARAMS)
    walls = median_times(runs, repeats)
    for name in by_loop:
        short, long = walls[(name, short_s)], walls[(name, long_s)]
        times = f"time({short_s:g} s) = {short:.2f} s, time({long_s:g} s) = {long:.2f} s"
        print(f"{name}: {times}, ratio {long / short:.2f}")


def real_size_engines(dtype_name: str, device: str, threads: int) -> dict[str, MusicEngine]:
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
    return engines(LoadedModel("small-sized", model, tokenizer, device, dtype))


def bench_real_size(args: argparse.Namespace, device: str) -> None:
    print(
        f"\nreal size: {args.real_clip_s:g} s clips on {device}, guidance 3.0, top_k 250, "
        f"{args.threads} threads, median of {args.real_repeats} interleaved runs"
    )
    print(f"{'dtype':>9} {'batch':>5} {'loop':>7} {'wall s':>8} {'ms/step':>8} {'clips/h':>8} {'vs hf':>6}")
    for dtype_name in args.real_dtypes:
        by_loop = real_size_engines(dtype_name, device, args.threads)
        loaded = next(iter(by_loop.values())).loaded
        steps = int(args.real_clip_s * loaded.frame_rate) + loaded.num_codebooks - 1
        for batch in args.real_batches:
            runs = {}
            for name, engine in by_loop.items():
                engine.generate(*clips(batch), 0.2, PARAMS)  # warm-up
                runs[name] = lambda engine=engine, batch=batch: engine.generate(*clips(batch), args.real_clip_s, PARAMS)
            walls = median_times(runs, args.real_repeats)
            for name, wall in walls.items():
                print(
                    f"{dtype_name:>9} {batch:>5} {name:>7} {wall:>8.1f} {1000 * wall / steps:>8.0f} "
                    f"{3600 * batch / wall:>8.0f} {walls.get('hf', wall) / wall:>5.2f}x"
                )


class SharedStream:
    """The stream every clip of a batch shared before per-clip streams (issue 30): the global generator,
    seeded once per batch, one `torch.rand` per step. The baseline `--streams` times them against."""

    def __init__(self, seeds: list[int], codebooks: int, device: str) -> None:
        import torch

        torch.manual_seed(seeds[0])
        self.rows, self.device = len(seeds) * codebooks, device

    def window(self, index: int, steps: int) -> SharedStream:
        return self

    def __getitem__(self, step: int) -> object:
        import torch

        return torch.rand((self.rows, 1), device=self.device)


def bench_streams(batches: list[int], clip_s: float, repeats: int, device: str, token_loops: tuple[str, ...]) -> None:
    """Decode speed (codes only, ms per step) with per-clip streams against the shared stream, tiny model;
    the two take turns within each batch size, the shared stream first (the turn order alone moved
    the figures by up to 20% on a shared 2-core host: benchmarks/RESULTS.md).

    A lone clip's padding to 4 rows on CPU (`engine.invariance`) is not in these figures: it is
    `generate`'s, at batch 1 only, and costs at most one more clip's rows."""
    print(f"\nrandom streams: codes of {clip_s:g} s clips on the tiny model, median of {repeats} interleaved runs")
    tiny = load_engine("tiny", EngineConfig(device=device)).loaded
    print(f"{'loop':>5} {'batch':>5} {'per clip ms/step':>16} {'shared ms/step':>14} {'cost':>7}")
    for loop, engine in engines(tiny, token_loops).items():
        for batch in batches:
            run, steps = codes_run(engine, batch, clip_s)
            run()  # warm-up

            def with_streams(kind: type, engine: MusicEngine = engine, run: Callable[[], object] = run) -> None:
                engine.streams = kind
                run()

            kinds = {"shared": SharedStream, "per clip": ClipStreams}
            walls = median_times({name: functools.partial(with_streams, kind) for name, kind in kinds.items()}, repeats)
            own, shared = (1000 * walls[name] / steps for name in ("per clip", "shared"))
            print(f"{loop:>5} {batch:>5} {own:>16.2f} {shared:>14.2f} {100 * (own / shared - 1):>+6.1f}%")


def bench_modes(batch: int, clip_s: float, repeats: int, device: str) -> None:
    """Each mode through both token loops on its tiny model: what a mode costs, and what `fast` gains."""
    print(f"\nmodes: {batch} clips of {clip_s:g} s on the tiny models, median of {repeats} interleaved runs")
    prompts, seeds = clips(batch)
    runs = {}
    for mode, name in MODES.items():
        inputs = mode_inputs(mode, batch, clip_s)
        for loop, engine in engines(load_engine(name, EngineConfig(device=device)).loaded).items():
            engine.generate(prompts[:1], seeds[:1], 1.0, PARAMS)  # warm-up
            run = functools.partial(engine.generate, prompts, seeds, clip_s, PARAMS, inputs=inputs)
            runs[f"{mode:>12} {loop:>4}"] = run
    for label, wall in median_times(runs, repeats).items():
        print(f"{label}  {wall:7.2f} s  {batch * clip_s / wall:6.2f} audio s/s")


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (GPU figures: benchmarks/gpu.sh)")
    parser.add_argument("--token-loops", nargs="+", default=list(TOKEN_LOOPS), choices=TOKEN_LOOPS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", type=int, default=8, help="clips in the comparison with plain generate")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clip-s", type=float, default=5.0)
    parser.add_argument("--long-s", type=float, default=300.0)
    parser.add_argument("--short-s", type=float, default=30.0)
    parser.add_argument("--long-token-loops", nargs="*", default=["fast"], choices=TOKEN_LOOPS, help="empty: skip")
    parser.add_argument("--skip-tiny", action="store_true", help="only the real-size part")
    parser.add_argument("--real-size", action="store_true", help="also time a random musicgen-small-sized model")
    parser.add_argument("--modes", action="store_true", help="also time stereo, audio prompt and melody")
    parser.add_argument("--streams", action="store_true", help="also time per-clip random streams against one")
    parser.add_argument("--real-batches", type=int, nargs="+", default=[4])
    parser.add_argument("--real-dtypes", nargs="+", default=["bfloat16"])
    parser.add_argument("--real-clip-s", type=float, default=5.0)
    parser.add_argument("--real-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for real size")
    args = parser.parse_args(argv)
    device = pick_device(EngineConfig(device=args.device))
    print(f"host: {describe_host()}; device {device}")
    if not args.skip_tiny:
        tiny = load_engine("tiny", EngineConfig(device=device)).loaded
        by_loop = engines(tiny, tuple(args.token_loops))
        for engine in by_loop.values():
            engine.generate(PROMPTS[:1], [0], 1.0, PARAMS)  # warm-up
        bench_against_plain(by_loop, args.clips, args.batch, args.clip_s, args.repeats)
        if args.long_token_loops:
            bench_longform(engines(tiny, tuple(args.long_token_loops)), args.long_s, args.short_s, args.repeats)
    if args.modes:
        bench_modes(args.batch, args.clip_s, args.repeats, device)
    if args.streams:
        bench_streams(sorted({args.batch, 8}), args.clip_s, args.repeats, device, tuple(args.token_loops))
    if args.real_size:
        bench_real_size(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
