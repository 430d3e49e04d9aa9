"""VariantGenerator: expand a grid of keys, with dependent and derived values, into named variants."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicsweep.errors import MusicsweepError

if TYPE_CHECKING:
    from musicsweep.layout import SweepDir

NAME_KEY = "_name"


class Variant(dict):
    """One variant's values; `metadata_keys` are the keys added with hide=True, which a job may ignore."""

    metadata_keys: frozenset[str] = frozenset()


@dataclass
class _Axis:
    key: str
    values: Any  # a list, or a callable of the keys it depends on returning a list
    hide: bool
    derived: bool = False

    @property
    def depends_on(self) -> list[str]:
        if not callable(self.values):
            return []
        return list(inspect.signature(self.values).parameters)


class VariantGenerator:
    """Grid expansion with dependencies, as in Chester, but deterministic and safe to update.

    `add(key, values)` adds an axis. A callable's parameter names say which keys it depends on;
    it returns the list of values for that combination. `derive(key, fn)` adds one computed value
    per variant. Keys added with `hide=True` stay in each variant but leave its name.
    """

    def __init__(self) -> None:
        self._axes: dict[str, _Axis] = {}

    def add(self, key: str, values: Iterable[Any] | Callable[..., Iterable[Any]], hide: bool = False) -> None:
        if not callable(values):
            values = list(values)
            if not values:
                raise MusicsweepError(f"variant key {key!r}: no values given")
        self._axes[key] = _Axis(key, values, hide)

    def update(self, key: str, values: Iterable[Any] | Callable[..., Iterable[Any]], hide: bool | None = None) -> None:
        """Replace an axis's values, keeping its hide flag unless given."""
        if key not in self._axes:
            raise MusicsweepError(f"variant key {key!r}: cannot update a key that was never added")
        axis = self._axes[key]
        keep_hidden = axis.hide if hide is None else hide
        if axis.derived:  # still one computed value per variant, not a list to iterate
            if not callable(values):
                raise MusicsweepError(f"variant key {key!r}: made with derive(), so update it with a function")
            self.derive(key, values, hide=keep_hidden)
            return
        self.add(key, values, hide=keep_hidden)

    def derive(self, key: str, fn: Callable[..., Any], hide: bool = False) -> None:
        """Add a computed field: `fn`'s parameter names are the keys it reads."""
        self._axes[key] = _Axis(key, fn, hide, derived=True)

    @classmethod
    def from_prompts_file(cls, path: str | Path) -> VariantGenerator:
        """Variants from a `prompts.txt` (PROMPT ; DURATION ; FILE_NAME), one per line."""
        from musicsweep.sweep.prompts import INPUT_FIELDS, ROW_KEY, read_prompts_file

        generator = cls()
        rows = read_prompts_file(Path(path))
        generator.add(ROW_KEY, rows, hide=True)
        for key in ("prompt", "duration_s", "file_name"):
            generator.derive(key, _row_field(key), hide=key != "file_name")
        for key in INPUT_FIELDS:
            if any(key in row.inputs for row in rows):  # a row without it gets None: no input
                generator.derive(key, _row_input(key), hide=True)
        return generator

    @classmethod
    def from_ratings(
        cls,
        sweep: str | Path | SweepDir,
        min_rating: float = 4,
        seeds_per_clip: int = 4,
        explore: dict[str, float] | None = None,
        rater: str | None = None,
    ) -> VariantGenerator:
        """The kept or top-rated clips of a rated sweep (name, folder or SweepDir), each with new seeds.

        A clip counts when a rater kept it, or when its raters' mean rating is at least `min_rating`
        and nobody discarded it (`rater` limits this to one rater). `explore={"guidance_scale": 1}`
        also runs each favourite at its value -1 and +1. See musicsweep.curate.favourites.
        """
        from musicsweep.curate.favourites import fill_generator

        return fill_generator(cls(), sweep, min_rating, seeds_per_clip, explore, rater)

    def _order(self) -> list[str]:
        """Keys in dependency order; a missing key or a cycle is an error naming the keys."""
        for axis in self._axes.values():
            for dependency in axis.depends_on:
                if dependency not in self._axes:
                    raise MusicsweepError(f"variant key {axis.key!r} depends on unknown key {dependency!r}")
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(key: str, path: list[str]) -> None:
            if state.get(key) == "done":
                return
            if state.get(key) == "visiting":
                cycle = path[path.index(key) :] + [key]
                raise MusicsweepError(f"variant keys form a dependency cycle: {' -> '.join(cycle)}")
            state[key] = "visiting"
            for dependency in self._axes[key].depends_on:
                visit(dependency, path + [key])
            state[key] = "done"
            order.append(key)

        for key in self._axes:
            visit(key, [])
        return order

    def variants(self) -> list[dict[str, Any]]:
        """Every combination, in a deterministic order, each with a stable `_name`."""
        partial: list[dict[str, Any]] = [{}]
        for key in self._order():
            axis = self._axes[key]
            expanded: list[dict[str, Any]] = []
            for variant in partial:
                arguments = {name: variant[name] for name in axis.depends_on}
                if axis.derived:
                    expanded.append({**variant, key: axis.values(**arguments)})
                    continue
                values = list(axis.values(**arguments)) if callable(axis.values) else axis.values
                expanded.extend({**variant, key: value} for value in values)
            partial = expanded
        hidden = frozenset(key for key, axis in self._axes.items() if axis.hide)
        ordered = [Variant({key: variant[key] for key in self._axes}) for variant in partial]
        for variant in ordered:
            variant.metadata_keys = hidden
        visible = [key for key in self._axes if not self._axes[key].hide]
        varying = [key for key in visible if len({canonical_json(v[key], f"variant key {key!r}") for v in ordered}) > 1]
        for variant in ordered:
            variant[NAME_KEY] = variant_name(variant, varying)
        return ordered


def _row_input(key: str) -> Callable[[Any], Any]:
    def input_of(row: Any) -> Any:
        return row.inputs.get(key)

    return input_of


def _row_field(key: str) -> Callable[[Any], Any]:
    def field_of(row: Any) -> Any:
        return getattr(row, key)

    return field_of


def canonical_json(value: Any, where: str = "value") -> str:
    """One text per value, so values can be compared and hashed whatever their type.

    Dict keys become JSON's own text for them (1 -> "1", True -> "true"), so a dict with mixed
    key types sorts; a key JSON cannot write, or two keys with one text, is a one-line error.
    """
    return json.dumps(_json_keys(value, where), sort_keys=True, default=repr)


def _json_keys(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise MusicsweepError(f"{where}: dict key {key!r} is not a string or number")
            text = key if isinstance(key, str) else json.dumps(key)
            if text in converted:
                raise MusicsweepError(f"{where}: dict keys {key!r} and {text!r} collide once written as JSON")
            converted[text] = _json_keys(item, f"{where}[{key!r}]")
        return converted
    if isinstance(value, list | tuple):
        return [_json_keys(item, where) for item in value]
    return value


def variant_name(variant: dict[str, Any], varying: list[str]) -> str:
    """Readable part from the varying keys, plus a hash of all visible content: stable across runs."""
    readable = "_".join(f"{key}={_short(variant[key])}" for key in varying) or "variant"
    digest = hashlib.sha256(canonical_json({k: v for k, v in variant.items() if k != NAME_KEY}).encode())
    return f"{readable}_{digest.hexdigest()[:6]}"


def _short(value: Any) -> str:
    text = str(value).replace("/", "-").replace(" ", "-")
    return text[:24]
