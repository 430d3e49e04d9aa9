"""Worker progress, one plain line per batch: clips done/total, audio seconds per second, ETA."""

from __future__ import annotations

import time
from dataclasses import dataclass


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class Progress:
    """Counts clips and audio seconds; the rate is over wall time since the first batch began, not model loading."""

    total_clips: int
    total_audio_s: float
    done_clips: int = 0
    done_audio_s: float = 0.0
    started: float | None = None

    def begin(self) -> None:
        """Start the clock at the first batch (later calls do nothing)."""
        if self.started is None:
            self.started = time.monotonic()

    def advance(self, clips: int, audio_s: float, generated: bool = True) -> str:
        """Record finished clips and return the progress line; skipped or failed clips leave the rate alone."""
        self.done_clips += clips
        if generated:
            self.done_audio_s += audio_s
        else:
            self.total_audio_s -= audio_s
        elapsed = max(time.monotonic() - (self.started or time.monotonic()), 1e-9)
        rate = self.done_audio_s / elapsed
        left = max(self.total_audio_s - self.done_audio_s, 0.0)
        eta = format_duration(left / rate) if rate > 0 else "unknown"
        return f"progress: {self.done_clips}/{self.total_clips} clips, {rate:.2f} audio s/s, ETA {eta}"
