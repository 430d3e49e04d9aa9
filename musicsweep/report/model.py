"""What the report shows about each clip and about the sweep, independent of how it is drawn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicsweep.costs.rows import CostRow
from musicsweep.report.audio_checks import AudioCheck

DONE, FAILED, NO_AUDIO, UNFINISHED = "done", "failed", "done, audio not pulled", "not finished"


@dataclass
class Clip:
    """One job of the manifest, as the report shows it."""

    job_id: str
    prompt: str
    model: str
    requested_s: float
    output_name: str
    host: str | None
    axes: dict[str, Any]
    state: str
    error: str | None = None
    cost: CostRow | None = None
    check: AudioCheck | None = None
    check_error: str | None = None

    @property
    def image_name(self) -> str:
        return f"img/{Path(self.output_name).stem}.png"


@dataclass(frozen=True)
class Summary:
    """The figures in the page header."""

    name: str
    created: float | None
    generated: float
    models: list[str]
    backends: list[str]
    hosts: list[str]
    states: dict[str, int]
    audio_minutes: float
    paid_usd: float | None
    paid_basis: str
    marginal_usd: float
    flags: dict[str, list[str]]
    has_cost_report: bool
    estimate: str | None = None  # the launch estimate beside the measured bill, from cost_summary.json

    @property
    def usd_per_audio_minute(self) -> float | None:
        if self.paid_usd is None or self.audio_minutes <= 0:
            return None
        return self.paid_usd / self.audio_minutes

    @property
    def checks_line(self) -> str:
        """The audio checks in one line, for the console beside auto_pull's summary."""
        if not self.flags:
            return "audio checks: every pulled clip passed"
        flagged = len({job_id for ids in self.flags.values() for job_id in ids})
        counts = ", ".join(f"{len(ids)} {flag}" for flag, ids in sorted(self.flags.items()))
        return f"audio checks: {flagged} clip(s) flagged ({counts}); see the report"
