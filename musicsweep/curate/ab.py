"""Blind A/B listening on one axis: which clips form a fair pair, what a choice records, and the results.

A fair pair differs only on the axis under test: same prompt and same value of every other axis
(seed included), so a preference can only come from that axis.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicsweep.curate.journal import append_record, read_journal
from musicsweep.curate.stats import bradley_terry, pairwise_wins, wilson_interval
from musicsweep.errors import MusicsweepError
from musicsweep.report.grid import format_value
from musicsweep.report.model import DONE, Clip
from musicsweep.sweep.variants import canonical_json

AB_FILE = "ab.jsonl"
CHOICES = ("a", "b", "same")


def fair_pairs(clips: Iterable[Clip], axis: str, audio_dir: Path) -> list[tuple[Clip, Clip]]:
    """Every unordered pair of listenable clips that differ on `axis` and on nothing else."""
    groups: dict[str, list[Clip]] = {}
    for clip in clips:
        if clip.state != DONE or axis not in clip.axes or not (audio_dir / clip.output_name).exists():
            continue
        rest = {key: value for key, value in clip.axes.items() if key != axis}
        groups.setdefault(canonical_json([clip.prompt, rest]), []).append(clip)
    return [
        (first, second)
        for members in groups.values()
        for first, second in itertools.combinations(members, 2)
        if canonical_json(first.axes[axis]) != canonical_json(second.axes[axis])
    ]


def check_axis(clips: list[Clip], axis: str, audio_dir: Path) -> list[tuple[Clip, Clip]]:
    """The fair pairs of `axis`, or a one-line error saying why there are none."""
    swept = sorted({key for clip in clips for key in clip.axes})
    if axis not in swept:
        raise MusicsweepError(f"--ab {axis!r}: not an axis of this sweep (axes: {', '.join(swept)})")
    pairs = fair_pairs(clips, axis, audio_dir)
    if not pairs:
        raise MusicsweepError(f"--ab {axis!r}: no two pulled clips differ only on {axis}")
    return pairs


def choice_record(axis: str, a: Clip, b: Clip, choice: str, rater: str) -> dict[str, Any]:
    if choice not in CHOICES:
        raise MusicsweepError(f"choice must be one of {', '.join(CHOICES)}, got {str(choice)[:20]!r}")
    return {
        "axis": axis,
        "a": {"clip": a.job_id, "value": a.axes[axis]},
        "b": {"clip": b.job_id, "value": b.axes[axis]},
        "choice": choice,
        "rater": rater,
        "time": time.time(),
    }


def save_choice(sweep_root: Path, record: dict[str, Any]) -> None:
    append_record(sweep_root / AB_FILE, record)


@dataclass(frozen=True)
class ValueResult:
    """How one value of the axis fared: wins over decisive comparisons, ties apart."""

    value: str
    wins: int
    losses: int
    ties: int
    strength: float | None  # Bradley–Terry, when the axis has more than two values and an MLE exists

    @property
    def decisive(self) -> int:
        return self.wins + self.losses

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.decisive if self.decisive else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.wins, self.decisive)


@dataclass(frozen=True)
class AxisResults:
    axis: str
    choices: int
    values: list[ValueResult]  # best first: by strength when known, else by win rate
    note: str = ""


def read_choices(sweep_root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Well-formed A/B records, and one line per skipped line."""
    journal = read_journal(sweep_root / AB_FILE)
    good, problems = [], list(journal.problems)
    for record in journal.records:
        line = record.pop("_line")
        sides = [record.get(side) for side in ("a", "b")]
        if (
            not isinstance(record.get("axis"), str)
            or record.get("choice") not in CHOICES
            or not all(isinstance(side, dict) and "value" in side for side in sides)
        ):
            problems.append(f"{sweep_root / AB_FILE}:{line}: skipped, not an A/B choice record")
            continue
        good.append(record)
    return good, problems


def axis_results(records: list[dict[str, Any]]) -> list[AxisResults]:
    """One table per axis listened to, in the order the axes first appear."""
    by_axis: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_axis.setdefault(record["axis"], []).append(record)
    return [results_of(axis, chosen) for axis, chosen in by_axis.items()]


def results_of(axis: str, records: list[dict[str, Any]]) -> AxisResults:
    tally: dict[str, list[int]] = {}  # value -> [wins, losses, ties]
    outcomes: list[tuple[str, str]] = []
    for record in records:
        a, b = format_value(record["a"]["value"]), format_value(record["b"]["value"])
        for value in (a, b):
            tally.setdefault(value, [0, 0, 0])
        if record["choice"] == "same":
            tally[a][2] += 1
            tally[b][2] += 1
            continue
        winner, loser = (a, b) if record["choice"] == "a" else (b, a)
        tally[winner][0] += 1
        tally[loser][1] += 1
        outcomes.append((winner, loser))
    strengths: dict[Any, float] | None = None
    note = ""
    if len(tally) > 2:
        strengths = bradley_terry(pairwise_wins(outcomes))
        if strengths is None:
            note = "Bradley–Terry: not estimable yet (some value has never won or never lost against the rest)"
    values = [
        ValueResult(value, *counts, strengths.get(value) if strengths else None) for value, counts in tally.items()
    ]
    values.sort(key=lambda v: (-(v.strength if v.strength is not None else -1), -(v.win_rate or 0.0), v.value))
    return AxisResults(axis, len(records), values, note)
