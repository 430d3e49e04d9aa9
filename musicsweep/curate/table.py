"""The ratings table and the A/B results as rows: what `musicsweep ratings` prints and `--csv` writes."""

from __future__ import annotations

import csv
import io
from typing import Any

from musicsweep.curate.ab import AxisResults
from musicsweep.curate.ratings import Rating
from musicsweep.report.grid import BOOKKEEPING_KEYS, format_value
from musicsweep.report.model import Clip

AB_COLUMNS = ["axis", "rank", "value", "wins", "losses", "same", "win_rate", "ci95_low", "ci95_high", "bradley_terry"]


def rating_rows(clips: list[Clip], latest: dict[tuple[str, str], Rating]) -> list[dict[str, Any]]:
    """One row per (clip, rater), clips in manifest order, with the clip's swept axes."""
    axes = [key for key in dict.fromkeys(k for clip in clips for k in clip.axes) if key not in BOOKKEEPING_KEYS]
    by_clip: dict[str, list[Rating]] = {}
    for (clip_id, _rater), rating in sorted(latest.items()):
        by_clip.setdefault(clip_id, []).append(rating)
    rows = []
    for clip in clips:
        for rating in by_clip.get(clip.job_id, []):
            row = {"clip": clip.output_name, "prompt": clip.prompt}
            row |= {key: format_value(clip.axes.get(key, "")) for key in axes}
            row |= {
                "rater": rating.rater,
                "rating": "" if rating.rating is None else rating.rating,
                "keep": {True: "kept", False: "discarded", None: ""}[rating.keep],
                "note": rating.note,
            }
            rows.append(row)
    return rows


def ab_rows(results: list[AxisResults]) -> list[dict[str, Any]]:
    rows = []
    for axis in results:
        for rank, value in enumerate(axis.values, start=1):
            low, high = value.interval
            rows.append(
                {
                    "axis": axis.axis,
                    "rank": rank,
                    "value": value.value,
                    "wins": value.wins,
                    "losses": value.losses,
                    "same": value.ties,
                    "win_rate": "" if value.win_rate is None else f"{value.win_rate:.4f}",
                    "ci95_low": f"{low:.4f}" if value.decisive else "",
                    "ci95_high": f"{high:.4f}" if value.decisive else "",
                    "bradley_terry": "" if value.strength is None else f"{value.strength:.4f}",
                }
            )
    return rows


def csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
