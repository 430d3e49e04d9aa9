"""Ratings of clips: what one record holds, how a request is checked, and which record counts.

A record is a clip's whole state for one rater at one time (rating, keep, note), so the latest
record per (clip, rater) is that rater's opinion, and the journal doubles as its history.
"""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicsweep.curate.journal import Journal, append_record, read_journal
from musicsweep.errors import MusicsweepError

RATINGS_FILE = "ratings.jsonl"
MAX_NOTE_CHARS = 500
_RATER = re.compile(r"^[\w.@+-]{1,64}$")


def default_rater() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "anonymous"


def check_rater(name: str) -> str:
    if not _RATER.match(name):
        raise MusicsweepError(f"--rater {name!r}: use 1-64 letters, digits, '.', '_', '@', '+' or '-'")
    return name


@dataclass(frozen=True)
class Rating:
    """One rater's latest word on one clip."""

    clip: str
    rater: str
    rating: int | None
    keep: bool | None
    note: str
    time: float

    def to_record(self) -> dict[str, Any]:
        return {
            "clip": self.clip,
            "rater": self.rater,
            "rating": self.rating,
            "keep": self.keep,
            "note": self.note,
            "time": self.time,
        }


def check_rating(payload: Any, clips: Collection[str], rater: str, now: float | None = None) -> Rating:
    """A rating request (or a journal record) as a Rating; anything out of bounds is a one-line error."""
    if not isinstance(payload, dict):
        raise MusicsweepError("a rating must be a JSON object")
    clip = payload.get("clip")
    if not isinstance(clip, str) or clip not in clips:
        raise MusicsweepError(f"unknown clip {str(clip)[:40]!r}")
    rating = payload.get("rating")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5):
        raise MusicsweepError(f"rating must be a whole number from 1 to 5, got {str(rating)[:20]!r}")
    keep = payload.get("keep")
    if keep is not None and not isinstance(keep, bool):
        raise MusicsweepError(f"keep must be true, false or null, got {str(keep)[:20]!r}")
    note = payload.get("note", "")
    if not isinstance(note, str):
        raise MusicsweepError("note must be text")
    if len(note) > MAX_NOTE_CHARS:
        raise MusicsweepError(f"note is {len(note)} characters; at most {MAX_NOTE_CHARS}")
    stamp = time.time() if now is None else now
    return Rating(clip, rater, rating, keep, note, stamp)


def save_rating(sweep_root: Path, rating: Rating) -> None:
    append_record(sweep_root / RATINGS_FILE, rating.to_record())


def latest_ratings(sweep_root: Path, clips: Collection[str]) -> tuple[dict[tuple[str, str], Rating], list[str]]:
    """(clip, rater) -> the latest valid record, and one line per record skipped (with its line number)."""
    journal: Journal = read_journal(sweep_root / RATINGS_FILE)
    latest: dict[tuple[str, str], Rating] = {}
    problems = list(journal.problems)
    for record in journal.records:
        line = record.pop("_line")
        try:
            rater = check_rater(str(record.get("rater", "")))
            stamp = record.get("time")
            if not isinstance(stamp, int | float):
                raise MusicsweepError("time must be a number")
            rating = check_rating(record, clips, rater, float(stamp))
        except MusicsweepError as error:
            problems.append(f"{sweep_root / RATINGS_FILE}:{line}: skipped, {error}")
            continue
        latest[(rating.clip, rating.rater)] = rating  # file order is time order: the later line wins
    return latest, problems


@dataclass(frozen=True)
class ClipVerdict:
    """All raters' latest ratings of one clip, reduced to what a table or a follow-up sweep needs."""

    clip: str
    ratings: tuple[Rating, ...]

    @property
    def mean_rating(self) -> float | None:
        values = [r.rating for r in self.ratings if r.rating is not None]
        return sum(values) / len(values) if values else None

    @property
    def kept(self) -> bool:
        return any(r.keep is True for r in self.ratings) and not self.discarded

    @property
    def discarded(self) -> bool:
        return any(r.keep is False for r in self.ratings)


def verdicts(latest: dict[tuple[str, str], Rating], rater: str | None = None) -> dict[str, ClipVerdict]:
    """clip -> its verdict, from every rater or only `rater`."""
    grouped: dict[str, list[Rating]] = {}
    for (clip, who), rating in sorted(latest.items()):
        if rater is None or who == rater:
            grouped.setdefault(clip, []).append(rating)
    return {clip: ClipVerdict(clip, tuple(ratings)) for clip, ratings in grouped.items()}
