"""A batch's state at a window boundary, so a long clip cut short resumes instead of restarting.

After each continuation window the engine hands its caller a `WindowCheckpoint`: the undelayed
codes generated so far. Nothing else carries from one window to the next: each window re-prefills
its prompt, and each clip's window draws from its own stream, keyed by its seed and the window
(`engine.streams`). So running the remaining windows from the codes gives the same codes as an
uninterrupted run, bit for bit on the same device, in whatever batch the clips resume. The engine
knows nothing of the store: where checkpoints go is the caller's business.
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


WindowCallback = Callable[[WindowCheckpoint], None]
