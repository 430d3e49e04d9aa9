"""The one terminal every command prints through, and tables that stay readable off a terminal.

It sits below every folder, so the CLI's display and the doctor share it without importing each other.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, markup=False, soft_wrap=not sys.stdout.isatty())


def print_plain(text: str) -> None:
    """Many lines at once, written as they are: rich renders and wraps 47,000 status lines in 2 s."""
    console.file.write(text + "\n")
    console.file.flush()


def render_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], bold_last: bool = False):
    """A rich Table on a terminal; aligned plain text otherwise (a wide plan must not wrap at 80 columns)."""
    if console.is_terminal:
        table = Table(title=title)
        for header in headers:
            table.add_column(header)
        for index, row in enumerate(rows):
            table.add_row(*row, style="bold" if bold_last and index == len(rows) - 1 else None)
        return table
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [title] + [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)
