"""GPU engine benchmark, run by benchmarks/gpu.sh: `hf` against `fast` per decode step, and what a sweep gets.

    bash benchmarks/gpu.sh                 # CUDA: musicgen-small-sized bf16 at batch 1, 8, 32 (+ medium-sized)
    bash benchmarks/gpu.sh --device cpu    # smoke test with the tiny model, a few seconds

Prints, and writes to `--out`: ms per token step for each token loop and batch (codes only, the median
of interleaved runs), peak GPU memory, audio seconds per wall second of whole clips at the largest
batch, the 300 s vs 30 s long-form ratio, each mode (stereo, audio prompt, melody) hf against fast,
then the medium-sized model at batch 1 and 8 if the time
budget allows. The models have random weights, built on the device: nothing is downloaded.
Targets (issue 18, H100/H200 class): fast at least 3x hf at batch 1, at most 3 ms per step at
batch 1, at least 200 audio s per wall s at batch 32.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from timing import MODES, PARAMS, TOKEN_LOOPS, clips, codes_run, describe_host, engines, median_times, mode_inputs

from musicsweep.engine import MusicEngine
from musicsweep.engine.loading import LoadedModel, torch_threads

CUDA_DEFAULTS = {"batches": [1, 8, 32], "clip_s": 10.0, "short_s": 30.0, "long_s": 300.0, "repeats": 3}
CPU_DEFAULTS = {"batches": [1, 2], "clip_s": 0.4, "short_s": 1.0, "long_s": 2.0, "repeats": 1}


class Report:
    """Lines printed as they come and rewritten to the output file after each, so a timeout keeps what ran."""

    def __init__(self, path: Path) -> None:
        self.path, self.lines = path, []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)
        self.path.write_text("\n".join(self.lines) + "\n")


def build(size_name: str, device: str) -> tuple[LoadedModel, float]:
    """A random model at `size_name`'s shapes on `device` (bf16 on CUDA; the tiny model in float32 on CPU)."""
    import torch

    from musicsweep.engine import tiny

    started = time.perf_counter()
    if device == "cpu":
        size_name, dtype, threads = "tiny", torch.float32, 1
        model, tokenizer = tiny.build_tiny_model()
    else:
        size = {"small": tiny.MUSICGEN_SMALL, "medium": tiny.MUSICGEN_MEDIUM}[size_name]
        dtype, threads = torch.bfloat16, None
        model, tokenizer = tiny.build_small_sized_model(dtype, size=size, device=device)
    model.to(device).eval()
    return LoadedModel(f"{size_name} model", model, tokenizer, device, dtype, threads), time.perf_counter() - started


def peak_gib(run: Callable[[], object], peaks: dict[str, float], name: str) -> Callable[[], object]:
    """`run`, recording the peak GPU memory it allocated under `name`."""
    import torch

    def measured() -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        run()
        if torch.cuda.is_available():
            peaks[name] = max(peaks.get(name, 0.0), torch.cuda.max_memory_allocated() / 2**30)

    return measured


def bench_steps(report: Report, loaded: LoadedModel, batches: list[int], clip_s: float, repeats: int) -> None:
    """ms per decode step, hf and fast side by side, each batch's runs interleaved."""
    by_loop = engines(loaded)
    report(f"\n{loaded.name}: {clip_s:g} s clips, codes only, median of {repeats} interleaved runs")
    report("| batch | hf ms/step | fast ms/step | fast / hf | hf peak GiB | fast peak GiB |")
    report("|---|---|---|---|---|---|")
    for batch in batches:
        runs, peaks = {}, {}
        for name in TOKEN_LOOPS:
            run, steps = codes_run(by_loop[name], batch, clip_s)
            run()  # warm-up: CUDA graph capture, allocator growth
            runs[name] = peak_gib(run, peaks, name)
        walls = median_times(runs, repeats)
        hf, fast = (1000 * walls[name] / steps for name in TOKEN_LOOPS[::-1])
        report(
            f"| {batch} | {hf:.2f} | {fast:.2f} | {hf / fast:.2f}x | "
            f"{peaks.get('hf', 0.0):.2f} | {peaks.get('fast', 0.0):.2f} |"
        )


def bench_throughput(report: Report, engine: MusicEngine, batch: int, clip_s: float, repeats: int) -> None:
    """Whole clips (codes, EnCodec decode, levels) with the fast token loop: audio seconds per wall second."""

    def run() -> None:
        engine.generate(*clips(batch), clip_s, PARAMS)

    run()
    wall = median_times({"fast": run}, repeats)["fast"]
    audio_rate = batch * clip_s / wall
    report(f"\nfast, batch {batch}, whole {clip_s:g} s clips: {wall:.2f} s, {audio_rate:.1f} audio s per wall s")


def bench_longform(report: Report, engine: MusicEngine, short_s: float, long_s: float) -> None:
    runs = {s: lambda s=s: engine.generate(*clips(1), s, PARAMS) for s in (short_s, long_s)}
    walls = median_times(runs, 1)
    short, long = walls[short_s], walls[long_s]
    times = f"time({short_s:g} s) = {short:.2f} s, time({long_s:g} s) = {long:.2f} s"
    report(f"\nfast, one clip: {times}, ratio {long / short:.2f}")


def build_mode(model_name: str, device: str) -> LoadedModel:
    """A mode's model (tiny, tiny-stereo, tiny-melody) at musicgen-small's size on CUDA, tiny on CPU."""
    import torch

    from musicsweep.engine import tiny

    stereo, melody = "stereo" in model_name, "melody" in model_name
    if device == "cpu":
        model, tokenizer = tiny.build_tiny_model(melody=melody, stereo=stereo)
        dtype, threads = torch.float32, 1
    else:
        configs = tiny.MUSICGEN_SMALL.configs(channels=2 if stereo else 1)
        model, tokenizer = tiny.build_random_model(*configs, melody=melody, device=device)
        dtype, threads = torch.bfloat16, None
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(model_name, model, tokenizer, device, dtype, threads)


def bench_modes(report: Report, device: str, batch: int, clip_s: float, repeats: int) -> None:
    """Each of MusicGen's modes (docs/modes.md), whole clips, hf against fast, one model at a time."""
    report(f"\nmodes: batch {batch}, whole {clip_s:g} s clips, median of {repeats} interleaved runs")
    report("| mode | hf s | fast s | fast / hf |")
    report("|---|---|---|---|")
    prompts, seeds = clips(batch)
    for mode, model_name in MODES.items():
        loaded = build_mode(model_name, device)
        inputs = mode_inputs(mode, batch, clip_s)
        runs = {}
        with torch_threads(loaded.threads):
            for name, engine in engines(loaded).items():
                run = functools.partial(engine.generate, prompts, seeds, clip_s, PARAMS, inputs=inputs)
                run()  # warm-up: graphs, allocator
                runs[name] = run
            walls = median_times(runs, repeats)
        report(f"| {mode} | {walls['hf']:.2f} | {walls['fast']:.2f} | {walls['hf'] / walls['fast']:.2f}x |")
        del loaded, runs


def describe_device(device: str) -> str:
    import torch
    import transformers

    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else describe_host()
    return f"{name}; torch {torch.__version__}, transformers {transformers.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for the tiny smoke test")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu-results.md")
    parser.add_argument("--budget-s", type=float, default=330.0, help="skip the medium-sized part after this")
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--clip-s", type=float)
    parser.add_argument("--short-s", type=float)
    parser.add_argument("--long-s", type=float)
    parser.add_argument("--repeats", type=int)
    args = parser.parse_args(argv)
    defaults = CPU_DEFAULTS if args.device == "cpu" else CUDA_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    started = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = Report(args.out)
    report(f"# benchmarks/gpu.sh on {describe_device(args.device)}")
    loaded, seconds = build("small", args.device)
    report(f"\nbuilt {loaded.name} model in {seconds:.1f} s")
    with torch_threads(loaded.threads):
        bench_steps(report, loaded, args.batches, args.clip_s, args.repeats)
        fast = engines(loaded, ("fast",))["fast"]
        bench_throughput(report, fast, max(args.batches), args.clip_s, args.repeats)
        bench_longform(report, fast, args.short_s, args.long_s)
    del loaded, fast
    bench_modes(report, args.device, max(args.batches), max(args.clip_s, 1.5), args.repeats)
    if args.device != "cpu" and time.perf_counter() - started < args.budget_s:
        medium, seconds = build("medium", args.device)
        report(f"\nbuilt {medium.name} model in {seconds:.1f} s")
        bench_steps(report, medium, [b for b in args.batches if b <= 8], args.clip_s, args.repeats)
    else:
        report("\nmedium-sized: skipped (CPU smoke test, or past the time budget)")
    report(f"\ntotal {time.perf_counter() - started:.0f} s; figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
