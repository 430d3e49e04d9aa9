"""ratings.jsonl: one whole line per record under concurrent writers, corrupt lines skipped by number."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from musicsweep.curate.journal import append_record, read_journal
from musicsweep.curate.ratings import RATINGS_FILE, Rating, check_rating, latest_ratings, save_rating, verdicts
from musicsweep.errors import MusicsweepError

CLIPS = {"c1", "c2", "c3"}
WRITERS, RECORDS_EACH = 4, 50


def write_many(path: str, writer: int) -> None:
    for index in range(RECORDS_EACH):
        append_record(Path(path), {"writer": writer, "index": index, "note": "x" * 3000})


@pytest.mark.heavy
def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Four processes append 50 records of 3 kB each at once: 200 whole lines, none torn."""
    path = tmp_path / "ratings.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=write_many, args=(str(path), writer)) for writer in range(WRITERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    journal = read_journal(path)
    assert journal.problems == []
    assert sorted((r["writer"], r["index"]) for r in journal.records) == [
        (w, i) for w in range(WRITERS) for i in range(RECORDS_EACH)
    ]


def rating(clip: str, value: int | None, rater: str = "ann", keep: bool | None = None, note: str = "") -> Rating:
    return check_rating({"clip": clip, "rating": value, "keep": keep, "note": note}, CLIPS, rater, time.time())


def test_latest_record_per_clip_and_rater_wins_and_corrupt_lines_are_skipped(tmp_path: Path, caplog) -> None:
    save_rating(tmp_path, rating("c1", 2))
    save_rating(tmp_path, rating("c1", 5, keep=True, note="the one"))
    save_rating(tmp_path, rating("c1", 3, rater="bob"))
    with open(tmp_path / RATINGS_FILE, "a") as handle:
        handle.write('{"clip": "c2", "rating": 4, "rat\n')  # a torn line
        handle.write(json.dumps({"clip": "c2", "rating": 9, "rater": "ann", "time": 1.0}) + "\n")
        handle.write("[1, 2]\n")
    save_rating(tmp_path, rating("c3", 1, keep=False))
    latest, problems = latest_ratings(tmp_path, CLIPS)
    assert {key: (r.rating, r.keep, r.note) for key, r in latest.items()} == {
        ("c1", "ann"): (5, True, "the one"),
        ("c1", "bob"): (3, None, ""),
        ("c3", "ann"): (1, False, ""),
    }
    ratings_file = tmp_path / RATINGS_FILE
    assert [problem.split(": skipped")[0] for problem in problems] == [
        f"{ratings_file}:4",
        f"{ratings_file}:6",
        f"{ratings_file}:5",
    ]
    assert "rating must be a whole number from 1 to 5, got '9'" in problems[2]
    assert f"{ratings_file}:4: skipped, not JSON" in caplog.text
    everyone = verdicts(latest)
    assert everyone["c1"].mean_rating == 4.0 and everyone["c1"].kept and everyone["c3"].discarded
    assert verdicts(latest, "bob")["c1"].mean_rating == 3.0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"clip": "c1", "rating": 0}, "rating must be a whole number from 1 to 5, got '0'"),
        ({"clip": "c1", "rating": 6}, "rating must be a whole number from 1 to 5, got '6'"),
        ({"clip": "c1", "rating": 4.5}, "rating must be a whole number from 1 to 5, got '4.5'"),
        ({"clip": "c1", "rating": True}, "rating must be a whole number from 1 to 5, got 'True'"),
        ({"clip": "nope", "rating": 3}, "unknown clip 'nope'"),
        ({"clip": "c1", "note": "n" * 501}, "note is 501 characters; at most 500"),
        ({"clip": "c1", "keep": "yes"}, "keep must be true, false or null, got 'yes'"),
        (["c1", 3], "a rating must be a JSON object"),
    ],
)
def test_bad_ratings_are_one_line_errors(payload: object, reason: str) -> None:
    with pytest.raises(MusicsweepError) as error:
        check_rating(payload, CLIPS, "ann")
    assert str(error.value) == reason
