"""`musicsweep launch --from-ratings SWEEP`: a follow-up sweep of the favourites of a rated sweep.

It is an ordinary sweep through `run_sweep` (plan, estimate, --dry-run, skip-if-done); its default
name comes from its jobs, so the same command over the same ratings names the same sweep.
"""

from __future__ import annotations

import argparse

from musicsweep.cli.hydra_app import stable_name
from musicsweep.cli.run import run_sweep
from musicsweep.config import load_config
from musicsweep.curate.favourites import parse_explore, resolve_sweep
from musicsweep.errors import MusicsweepError
from musicsweep.sweep.variants import VariantGenerator

EPILOG = """examples:
  musicsweep launch --from-ratings night-run --dry-run
  musicsweep launch --from-ratings night-run --min-rating 4 --seeds-per-clip 8 --explore guidance_scale=±1"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="musicsweep launch --from-ratings",
        description="Sweep again around the kept or top-rated clips of a rated sweep, with new seeds.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from-ratings", required=True, metavar="SWEEP", help="the rated sweep (name or folder)")
    parser.add_argument("--min-rating", type=float, default=4, help="mean rating a clip needs (default 4)")
    parser.add_argument("--seeds-per-clip", type=int, default=4, help="new seeds per favourite (default 4)")
    parser.add_argument("--explore", action="append", default=[], metavar="KEY=±STEP", help="also step KEY by ±STEP")
    parser.add_argument("--rater", help="count only this rater's ratings (default: every rater)")
    parser.add_argument("--name", help="the new sweep's name (default: SWEEP-fav-<hash of its jobs>)")
    parser.add_argument("--backend", help="backend (default: musicsweep.yaml's)")
    parser.add_argument("--store", help="store URL (default: musicsweep.yaml's)")
    parser.add_argument("--dry-run", action="store_true", help="print the full plan and stop")
    parser.add_argument("-y", "--yes", action="store_true", help="launch on a paid backend without asking")
    args = parser.parse_args(argv)
    source = resolve_sweep(args.from_ratings)
    generator = VariantGenerator.from_ratings(
        source, args.min_rating, args.seeds_per_clip, parse_explore(args.explore), args.rater
    )
    name = args.name
    if name is None:
        digest = stable_name(generator.variants(), load_config().max_duration_s).removeprefix("sweep-")
        name = f"{source.name[:80]}-fav-{digest}"
    if name == source.name:
        raise MusicsweepError(f"--name {name!r}: the follow-up sweep needs a name of its own")
    run_sweep(generator, name, backend=args.backend, store=args.store, dry_run=args.dry_run, yes=args.yes)
    return 0
