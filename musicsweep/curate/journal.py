"""Append-only JSON-lines journals (`ratings.jsonl`, `ab.jsonl`) in a sweep folder.

A record is one `write()` of one line on a descriptor opened with O_APPEND, under an exclusive
`flock`: two browser tabs (or two servers) rating at once both land whole, and a crash can leave
at most one torn last line. The file is never rewritten; a torn or corrupt line is reported with
its line number and skipped, so one bad line never hides the others.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append `record` as one line: lock, one O_APPEND write, fsync, unlock."""
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        written = os.write(descriptor, line)
        if written != len(line):  # a full disk: say so rather than leave half a record unexplained
            raise OSError(f"{path}: short write ({written} of {len(line)} bytes)")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)  # closing releases the lock


@dataclass
class Journal:
    """The records of one journal file, and one line per line that could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_journal(path: Path) -> Journal:
    """Every well-formed record of `path` in file order; a missing file is an empty journal."""
    journal = Journal()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return journal
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as error:
            journal.problems.append(f"{path}:{number}: skipped, not JSON ({error})")
            continue
        if not isinstance(record, dict):
            journal.problems.append(f"{path}:{number}: skipped, not a JSON object")
            continue
        record["_line"] = number
        journal.records.append(record)
    for problem in journal.problems:
        logger.warning(problem)
    return journal
