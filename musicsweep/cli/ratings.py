"""`musicsweep ratings SWEEP`: the saved ratings and blind A/B results as tables, or as CSV (--csv)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from musicsweep.atomic import atomic_write_text
from musicsweep.cli.report import sweep_of
from musicsweep.curate.ab import axis_results, read_choices
from musicsweep.curate.page import swept_values
from musicsweep.curate.ratings import latest_ratings
from musicsweep.curate.table import AB_COLUMNS, ab_rows, csv_text, rating_rows
from musicsweep.report.build import collect_clips

EPILOG = """examples:
  musicsweep ratings night-run
  musicsweep ratings night-run --csv night-run-ratings.csv   # and night-run-ratings.ab.csv for A/B results"""


def print_rows(console: Console, title: str, rows: list[dict], columns: list[str]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in ("clip", "value"))
    for row in rows:
        table.add_row(*(str(row.get(column, "")) for column in columns))
    console.print(table)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="musicsweep ratings",
        description="Print the ratings and blind A/B results saved for a sweep.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep", nargs="?", help="sweep name or folder (default: the latest)")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write the ratings to FILE (A/B: FILE.ab.csv)")
    args = parser.parse_args(argv)
    sweep = sweep_of(args.sweep)
    clips = collect_clips(sweep, sweep.read_manifest())
    latest, problems = latest_ratings(sweep.root, {clip.job_id for clip in clips})
    choices, ab_problems = read_choices(sweep.root)
    ratings = rating_rows(clips, latest)
    results = ab_rows(axis_results(choices))
    columns = list(dict.fromkeys(key for row in ratings for key in row)) or ["clip", "rater", "rating", "keep", "note"]
    console = Console(stderr=False, width=max(100, Console().width))
    for problem in problems + ab_problems:
        console.print(f"warning: {problem}", style="yellow", markup=False, highlight=False)
    if args.csv:
        atomic_write_text(args.csv, csv_text(ratings, columns))
        print(f"ratings: {len(ratings)} row(s) -> {args.csv}")
        if results:
            ab_path = args.csv.with_suffix(".ab.csv")
            atomic_write_text(ab_path, csv_text(results, AB_COLUMNS))
            print(f"A/B results: {len(results)} row(s) -> {ab_path}")
        return 0
    fixed = set(columns) - {"clip", "rater", "rating", "keep", "note"} - set(swept_values(clips))
    shown = [column for column in columns if column not in fixed]  # the CSV keeps the axes that never vary
    print_rows(console, f"ratings of {sweep.name}: {len(ratings)} (latest per clip and rater)", ratings, shown)
    if results:
        print_rows(console, "blind A/B (win rate over decisive choices; 95% Wilson interval)", results, AB_COLUMNS)
    else:
        console.print("no blind A/B choices yet (musicsweep report SWEEP --serve --ab AXIS)")
    return 0
