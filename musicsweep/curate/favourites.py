"""The follow-up sweep of a rated one: its kept or top-rated clips again, with new seeds.

Every favourite keeps its prompt, duration, model and settings; it gets `seeds_per_clip` new seeds,
derived from its job id so the same ratings always give the same sweep (and a rerun skips what is
done). `explore` steps numeric settings to their neighbours (value - step, value, value + step),
each neighbour with the favourite's same new seeds, so a later blind A/B on that axis is fair.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicsweep.curate.ratings import latest_ratings, verdicts
from musicsweep.errors import MusicsweepError
from musicsweep.job import JOB_KEYS, GenerationParams
from musicsweep.layout import SweepDir
from musicsweep.sweep.variants import NAME_KEY

if TYPE_CHECKING:
    from musicsweep.sweep.variants import VariantGenerator

SOURCE_KEY = "source_clip"
NUMERIC_KEYS = ("duration_s", *GenerationParams.__dataclass_fields__)
_EXPLORE = re.compile(r"^([a-z_]+)=(?:±|\+-|\+/-)(\d+(?:\.\d+)?)$")


def parse_explore(items: list[str]) -> dict[str, float]:
    """`guidance_scale=±1` (or `+-1`) -> {"guidance_scale": 1.0}; the error names the bad item."""
    steps: dict[str, float] = {}
    for item in items:
        match = _EXPLORE.match(item.strip())
        if not match:
            raise MusicsweepError(f"--explore {item!r}: write KEY=±STEP (or KEY=+-STEP), e.g. guidance_scale=±1")
        steps[match[1]] = float(match[2])
    return check_explore(steps)


def check_explore(steps: dict[str, float]) -> dict[str, float]:
    for key, step in steps.items():
        if key not in NUMERIC_KEYS:
            raise MusicsweepError(f"explore {key!r}: not a numeric axis (one of {', '.join(NUMERIC_KEYS)})")
        if not step > 0 or (key == "top_k" and step != int(step)):
            raise MusicsweepError(
                f"explore {key!r}: step must be a positive {'whole ' if key == 'top_k' else ''}number"
            )
    return steps


def resolve_sweep(sweep: str | Path | SweepDir) -> SweepDir:
    """A SweepDir, a sweep folder path, or a sweep name in musicsweep.yaml's sweeps_dir."""
    if isinstance(sweep, SweepDir):
        return sweep
    path = Path(sweep)
    if (path / "manifest.json").exists():
        return SweepDir(path.resolve().parent, path.resolve().name)
    from musicsweep.config import load_config

    return SweepDir(load_config().sweeps_dir, str(sweep))


def favourite_variants(sweep: SweepDir, min_rating: float, rater: str | None) -> dict[str, dict[str, Any]]:
    """Job id -> variant (no seed, no name) of each clip kept, or rated `min_rating` or more and not discarded."""
    if not 1 <= min_rating <= 5:
        raise MusicsweepError(f"min_rating must be from 1 to 5, got {min_rating:g}")
    manifest = sweep.read_manifest()
    latest, _problems = latest_ratings(sweep.root, set(manifest.jobs))
    chosen = {}
    for job_id, verdict in verdicts(latest, rater).items():
        mean = verdict.mean_rating
        if verdict.kept or (mean is not None and mean >= min_rating and not verdict.discarded):
            entry = manifest.jobs[job_id]
            variant = {key: value for key, value in (entry.variant or {}).items() if key not in (NAME_KEY, "seed")}
            chosen[job_id] = {"prompt": entry.prompt, "duration_s": entry.duration_s, "model": entry.model} | variant
    if not chosen:
        who = f" by {rater}" if rater else ""
        raise MusicsweepError(
            f"{sweep.root / 'ratings.jsonl'}: no clip of {sweep.name} is kept or rated {min_rating:g} or more{who}"
        )
    return chosen


def new_seeds(job_id: str, count: int, taken: set[int]) -> list[int]:
    """`count` seeds from the job id (stable across runs), none already used in the rated sweep."""
    seeds: list[int] = []
    index = 0
    while len(seeds) < count:
        seed = int.from_bytes(hashlib.sha256(f"{job_id}:{index}".encode()).digest()[:4], "big") >> 1
        index += 1
        if seed not in taken and seed not in seeds:
            seeds.append(seed)
    return seeds


def neighbours(key: str, value: float, step: float) -> list[float]:
    """value - step, value, value + step, keeping those the key accepts."""
    kept = []
    for candidate in (value - step, value, value + step):
        candidate = int(candidate) if key == "top_k" else round(candidate, 9)
        try:
            if key == "duration_s":
                if candidate <= 0:
                    raise MusicsweepError("not positive")
            else:
                GenerationParams.from_mapping({key: candidate}, "explore")
        except MusicsweepError:
            continue
        kept.append(candidate)
    return kept


def _field(bases: dict[str, dict[str, Any]], key: str) -> Callable[[str], Any]:
    default = {f.name: f.default for f in dataclasses.fields(GenerationParams)}.get(key)

    def value_of(source_clip: str) -> Any:
        return bases[source_clip].get(key, default)

    return value_of


def _explored(bases: dict[str, dict[str, Any]], key: str, step: float) -> Callable[[str], list[Any]]:
    value_of = _field(bases, key)

    def values_of(source_clip: str) -> list[Any]:
        return neighbours(key, float(value_of(source_clip)), step)

    return values_of


def fill_generator(
    generator: VariantGenerator,
    sweep: str | Path | SweepDir,
    min_rating: float = 4,
    seeds_per_clip: int = 4,
    explore: dict[str, float] | None = None,
    rater: str | None = None,
) -> VariantGenerator:
    """Add the favourites' axes to `generator` (see `VariantGenerator.from_ratings`)."""
    if seeds_per_clip < 1:
        raise MusicsweepError(f"seeds_per_clip must be at least 1, got {seeds_per_clip}")
    steps = check_explore(dict(explore or {}))
    folder = resolve_sweep(sweep)
    bases = favourite_variants(folder, min_rating, rater)
    taken = {entry.seed for entry in folder.read_manifest().jobs.values()}
    generator.add(SOURCE_KEY, sorted(bases), hide=True)
    known = (*JOB_KEYS, *GenerationParams.__dataclass_fields__)
    keys = list(dict.fromkeys(key for base in bases.values() for key in base)) + list(steps)
    for key in dict.fromkeys(keys):
        if key in steps:
            generator.add(key, _explored(bases, key, steps[key]))
        else:
            generator.derive(key, _field(bases, key), hide=key not in known)

    def seeds_of(source_clip: str) -> list[int]:
        return new_seeds(source_clip, seeds_per_clip, taken)

    generator.add("seed", seeds_of)
    return generator
