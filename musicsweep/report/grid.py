"""The report's table shape: one row per prompt, one column per combination of the other axes.

The axes come from the variants in the manifest. A key becomes a column axis only if it takes
more than one value for some prompt: keys that merely follow the prompt (a file name, a
prompts.txt row) would otherwise spread every prompt over its own columns. A column axis whose
value follows from the others (a seed derived from the duration) stays out of the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicsweep.sweep.variants import NAME_KEY, canonical_json

# Variant keys that name or locate a clip but never change its sound.
# `source_clip` is the rated clip a follow-up sweep (VariantGenerator.from_ratings) started from.
BOOKKEEPING_KEYS = frozenset({"prompt", "row", "file_name", "base_name", "extra_pull_dirs", "source_clip", NAME_KEY})

Column = tuple[tuple[str, str], ...]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def value_sort_key(value: Any) -> tuple[int, float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Grid:
    """Rows (prompts), columns (axis values) and which clips sit in each cell, by clip index."""

    prompts: list[str]
    axes: list[str]
    label_axes: list[str]
    columns: list[Column]
    cells: dict[tuple[str, Column], list[int]]
    row_notes: dict[str, str]

    def label(self, column: Column) -> str:
        shown = [f"{key} {value}" for key, value in column if key in self.label_axes]
        return " · ".join(shown) or "clip"


def varying_within_prompt(items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Scalar keys (first-seen order) with more than one value among the clips of one prompt."""
    keys = list(dict.fromkeys(key for _, axes in items for key in axes if key not in BOOKKEEPING_KEYS))
    seen: dict[tuple[str, str], set[str]] = {}
    for prompt, axes in items:
        for key in keys:
            seen.setdefault((prompt, key), set()).add(canonical_json(axes.get(key)))
    scalar = [key for key in keys if all(_is_scalar(axes.get(key)) for _, axes in items)]
    return [key for key in scalar if any(len(values) > 1 for (_, k), values in seen.items() if k == key)]


def determined(key: str, by: list[str], items: list[tuple[str, dict[str, Any]]]) -> bool:
    """True if the values of `by` (per prompt) fix the value of `key`."""
    mapping: dict[tuple[str, ...], str] = {}
    for prompt, axes in items:
        source = (prompt, *(canonical_json(axes.get(k)) for k in by))
        if mapping.setdefault(source, canonical_json(axes.get(key))) != canonical_json(axes.get(key)):
            return False
    return True


def build_grid(items: list[tuple[str, dict[str, Any]]]) -> Grid:
    """Lay out clips given as (prompt, variant values) pairs."""
    axes = varying_within_prompt(items)
    labels = list(axes)
    for key in reversed(axes):
        others = [k for k in labels if k != key]
        if others and determined(key, others, items):
            labels.remove(key)
    cells: dict[tuple[str, Column], list[int]] = {}
    for index, (prompt, values) in enumerate(items):
        column = tuple((key, format_value(values.get(key, "-"))) for key in axes)
        cells.setdefault((prompt, column), []).append(index)
    raw = {tuple((k, format_value(v.get(k, "-"))) for k in axes): v for _, v in items}
    columns = sorted(raw, key=lambda column: [value_sort_key(raw[column].get(key)) for key in axes])
    prompts = sorted({prompt for prompt, _ in items}, key=str.casefold)
    return Grid(prompts, axes, labels, columns, cells, row_notes(items, axes))


def row_notes(items: list[tuple[str, dict[str, Any]]], axes: list[str]) -> dict[str, str]:
    """Per prompt, the scalar keys that vary across the sweep but are fixed for that prompt."""
    keys = [key for key in dict.fromkeys(k for _, values in items for k in values) if key not in BOOKKEEPING_KEYS]
    varying = [
        key
        for key in keys
        if key not in axes
        and all(_is_scalar(values.get(key)) for _, values in items)
        and len({canonical_json(values.get(key)) for _, values in items}) > 1
    ]
    notes: dict[str, str] = {}
    for prompt, values in items:
        notes.setdefault(prompt, " · ".join(f"{key} {format_value(values.get(key, '-'))}" for key in varying))
    return notes
