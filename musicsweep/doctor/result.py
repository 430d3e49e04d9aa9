"""A check's outcome and the table that shows all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from musicsweep.errors import MusicsweepError

OK, FAIL, FIXED, SKIP = "ok", "FAIL", "fixed", "skip"
NOTE = "note"  # worth knowing, never a failure (e.g. a setup that will need the package index)


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, its status, what was found, and the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def guarded(name: str, action: Callable[[], str], fix: str = "") -> Check:
    """Run `action` (returns the detail of a pass); a MusicsweepError it raises is a failure."""
    try:
        return Check(name, OK, action())
    except MusicsweepError as error:
        return Check(name, FAIL, " ".join(str(error).split()), fix)


def render(checks: list[Check]):
    from musicsweep.terminal import render_table

    rows = [[check.name, check.status, check.detail, check.fix or "-"] for check in checks]
    failed = sum(check.failed for check in checks)
    title = f"musicsweep doctor: {len(checks)} check(s), {failed} failed"
    return render_table(title, ("check", "status", "detail", "fix"), rows)
