"""Continuation's cost model in seconds, torch-free, so the launcher can price long clips.

The engine (`engine/longform.py`) makes a clip over 30 s as a 30 s first window, then windows of
`stride` new seconds, each conditioned on the last `30 - stride` seconds (70 s at stride 18 is
30 + 18 + 18 + 4). A decoder step costs a little more the more positions it attends to, so a
continuation step (after 12 s of context) costs more than an average first-window step: a clip's
*work* is its generated seconds, each weighted by `1 + ATTENTION_WEIGHT * position / window`,
normalised so that a 30 s clip is 30 work-seconds. ATTENTION_WEIGHT = 0.3 fits the measured
time(300 s) / time(30 s) = 10.47 of benchmarks/RESULTS.md. Throughput is calibrated in work
seconds per wall second, so a calibration at one length carries over to another.
"""

from __future__ import annotations

WINDOW_S = 30.0
DEFAULT_STRIDE_S = 18.0
ATTENTION_WEIGHT = 0.3


def windows_s(
    duration_s: float, stride_s: float = DEFAULT_STRIDE_S, window_s: float = WINDOW_S
) -> list[tuple[float, float]]:
    """(context seconds, new seconds) of each generate() call for one clip, as engine/longform plans them."""
    if not 0 < stride_s < window_s:
        raise ValueError(f"stride {stride_s}s must be between 0 and the {window_s}s window")
    windows = [(0.0, min(duration_s, window_s))]
    done = windows[0][1]
    while done < duration_s - 1e-9:
        new = min(stride_s, duration_s - done)
        windows.append((window_s - stride_s, new))
        done += new
    return windows


def work_s(duration_s: float, stride_s: float = DEFAULT_STRIDE_S, window_s: float = WINDOW_S) -> float:
    """A clip's generation work in first-window seconds (30 s clip = 30; 300 s clip ~ 314)."""
    total = 0.0
    for context, new in windows_s(duration_s, stride_s, window_s):
        mean_position = context + new / 2
        total += new * (1 + ATTENTION_WEIGHT * mean_position / window_s)
    return total / (1 + ATTENTION_WEIGHT / 2)
