"""A batch's state at a window boundary, so a long clip cut short resumes instead of restarting.

After each continuation window the engine hands its caller a `WindowCheckpoint`: the undelayed
codes generated so far and the RNG state the next window will draw from. Nothing else carries from
one window to the next (each window re-prefills its prompt), so restoring both and running the
remaining windows gives the same codes as an uninterrupted run, bit for bit on the same device.
A checkpoint without an RNG state (the codes of clips checkpointed in other batches) continues
from a fresh stream instead (`engine.generate.batch_seed`). The engine knows nothing of the store:
where checkpoints go is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class StopAtWindow(Exception):  # noqa: N818 (a request, not an error)
    """Raised by a window callback to end generation at this boundary, its checkpoint saved."""


@dataclass(frozen=True)
class WindowCheckpoint:
    """The batch after `windows_done` of `windows_total` windows."""

    windows_done: int
    windows_total: int
    codes: Any  # (batch, codebooks, frames) long, on the CPU
    rng_state: dict[str, Any] | None  # "cpu" and, on CUDA, "cuda": torch generator states


WindowCallback = Callable[[WindowCheckpoint], None]


def capture_rng(device: str) -> dict[str, Any]:
    """The generator states the sampler draws from (`CodeSampler.sample` uses the global RNG)."""
    import torch

    state = {"cpu": torch.get_rng_state()}
    if str(device).startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def restore_rng(state: dict[str, Any], device: str) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if "cuda" in state and str(device).startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))
