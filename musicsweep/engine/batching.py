"""Batch sizes and back-off: how many clips share one generate() call, and what to do when it fails.

`auto` batch size: on CUDA, as many clips as fit their transformer KV cache into 70% of free GPU
memory (capped at `AUTO_MAX`); on CPU the fixed `CPU_BATCH`, where generation is bound by reading the
weights, so a batch costs little more than one clip (benchmarks/RESULTS.md).

Back-off: a failed batch (CUDA out of memory, say) is retried as two halves, recursively, down to
single clips; only a clip that fails on its own is marked failed.

Failure injection, for tests and drills: with `MUSICSWEEP_INJECT_BATCH_FAILURE=N` in a worker's
environment, every generate() call with more than N clips raises `InjectedFailure` (a simulated
CUDA out-of-memory error) before doing any work.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from musicsweep.engine.checkpoint import StopAtWindow

INJECT_ENV = "MUSICSWEEP_INJECT_BATCH_FAILURE"
CPU_BATCH = 8
AUTO_MAX = 64
_GPU_MEMORY_SHARE = 0.7
_KV_OVERHEAD = 1.5
T = TypeVar("T")
R = TypeVar("R")


class InjectedFailure(RuntimeError):
    """A simulated out-of-memory error raised on purpose (see `INJECT_ENV`)."""


def check_injected_failure(batch_len: int) -> None:
    limit = os.environ.get(INJECT_ENV)
    if limit and batch_len > int(limit):
        raise InjectedFailure(f"CUDA out of memory (injected by {INJECT_ENV}={limit}: batch of {batch_len})")


def auto_batch_size(model: Any, device: str, dtype: Any, window_frames: int) -> int:
    """Clips per batch for `batch_size: auto`; see the module docstring."""
    import torch

    if not device.startswith("cuda"):
        return CPU_BATCH
    free_bytes, _total = torch.cuda.mem_get_info(torch.device(device))
    decoder = model.decoder.config
    element = torch.tensor([], dtype=dtype).element_size()
    # keys and values, every layer, each step of a window, twice for classifier-free guidance
    per_clip = 2 * decoder.num_hidden_layers * decoder.hidden_size * window_frames * element * 2 * _KV_OVERHEAD
    return max(1, min(AUTO_MAX, int(free_bytes * _GPU_MEMORY_SHARE // per_clip)))


def release_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def with_backoff(
    items: list[T], attempt: Callable[[list[T]], R], on_retry: Callable[[int, int, str], None]
) -> Iterator[tuple[list[T], R | None, str | None]]:
    """Yield (part, result, None) for parts that succeeded and (clip, None, traceback) for clips that failed alone.

    `on_retry(failed_size, next_size, error_line)` is called before each split.
    """
    try:
        result = attempt(items)
    except StopAtWindow:  # asked to stop, not failed: nothing to split
        raise
    except Exception as error:
        if len(items) == 1:
            yield items, None, traceback.format_exc()
            return
        release_memory()
        half = (len(items) + 1) // 2
        reason = (str(error).strip().splitlines() or [""])[0]
        on_retry(len(items), half, f"{type(error).__name__}: {reason}")
        yield from with_backoff(items[:half], attempt, on_retry)
        yield from with_backoff(items[half:], attempt, on_retry)
        return
    yield items, result, None
