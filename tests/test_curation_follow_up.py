"""From ratings to a follow-up sweep: which clips count, their new seeds, and a real launch on the
local backend (tiny model); `musicsweep ratings` prints and writes the same table."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from musicsweep import VariantGenerator
from musicsweep.cli.main import main
from musicsweep.cli.pull import main as auto_pull_main
from musicsweep.curate.ab import save_choice
from musicsweep.curate.favourites import new_seeds, parse_explore
from musicsweep.curate.ratings import RATINGS_FILE, check_rating, save_rating
from musicsweep.errors import MusicsweepError
from musicsweep.layout import SweepDir
from tests.synthetic_sweep import FakeClip, write_synthetic_sweep


def rated_sweep(runs: Path, name: str = "rated") -> tuple[SweepDir, list[str]]:
    """Four 1 s clips (guidance 3 and 5, seeds 1 and 2), rated by ann and bob:
    0: ann 5 -> in;  1: ann 4, bob 2 (mean 3) -> out;  2: ann 2 but kept -> in;  3: ann 5, bob discards -> out."""
    clips = [
        FakeClip({"prompt": "rain", "duration_s": 1, "guidance_scale": g, "seed": s}) for g in (3, 5) for s in (1, 2)
    ]
    sweep = write_synthetic_sweep(runs, name, clips)
    by_axes = {
        (entry.variant["guidance_scale"], entry.seed): job_id for job_id, entry in sweep.read_manifest().jobs.items()
    }
    ids = [by_axes[(g, s)] for g in (3, 5) for s in (1, 2)]
    for clip, rater, rating, keep in [
        (0, "ann", 5, None),
        (1, "ann", 4, None),
        (1, "bob", 2, None),
        (2, "ann", 2, True),
        (3, "ann", 5, None),
        (3, "bob", None, False),
    ]:
        save_rating(
            sweep.root, check_rating({"clip": ids[clip], "rating": rating, "keep": keep}, ids, rater, time.time())
        )
    return sweep, ids


def test_from_ratings_takes_kept_and_top_rated_clips_with_new_seeds(tmp_path: Path) -> None:
    sweep, ids = rated_sweep(tmp_path / "runs")
    variants = VariantGenerator.from_ratings(sweep, min_rating=4).variants()
    assert len(variants) == 2 * 4
    by_source = {}
    for variant in variants:
        by_source.setdefault(variant["source_clip"], []).append(variant)
        assert (variant["prompt"], variant["duration_s"], variant["model"]) == ("rain", 1.0, "tiny")
    assert sorted(by_source) == sorted([ids[0], ids[2]])
    for source, group in by_source.items():
        assert [v["seed"] for v in group] == new_seeds(source, 4, {1, 2})
        assert {v["guidance_scale"] for v in group} == {3 if source == ids[0] else 5}
    assert len({v["seed"] for v in variants}) == 8 and not {1, 2} & {v["seed"] for v in variants}
    assert VariantGenerator.from_ratings(sweep.root, min_rating=4).variants() == variants  # same ratings, same sweep

    only_ann = VariantGenerator.from_ratings(sweep, min_rating=4, seeds_per_clip=1, rater="ann").variants()
    assert sorted(v["source_clip"] for v in only_ann) == sorted(ids)  # bob's 2 and discard do not count

    explored = VariantGenerator.from_ratings(sweep, seeds_per_clip=2, explore=parse_explore(["guidance_scale=±1"]))
    values = sorted((v["source_clip"] == ids[0], v["guidance_scale"]) for v in explored.variants())
    assert values == [(False, g) for g in (4, 4, 5, 5, 6, 6)] + [(True, g) for g in (2, 2, 3, 3, 4, 4)]
    temperature = VariantGenerator.from_ratings(sweep, seeds_per_clip=1, explore={"temperature": 1}).variants()
    assert sorted(v["temperature"] for v in temperature) == [1.0, 1.0, 2.0, 2.0]  # 0 is not a valid temperature


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: VariantGenerator.from_ratings(s, min_rating=5, rater="bob"), "no clip of rated is kept or rated 5"),
        (lambda s: VariantGenerator.from_ratings(s, min_rating=7), "min_rating must be from 1 to 5, got 7"),
        (lambda s: VariantGenerator.from_ratings(s, seeds_per_clip=0), "seeds_per_clip must be at least 1, got 0"),
        (lambda s: VariantGenerator.from_ratings(s, explore={"seed": 1}), "explore 'seed': not a numeric axis"),
        (lambda s: parse_explore(["guidance_scale=1"]), "--explore 'guidance_scale=1': write KEY=±STEP"),
    ],
)
def test_from_ratings_bad_input_is_one_line(tmp_path: Path, call, message: str) -> None:
    sweep, _ids = rated_sweep(tmp_path / "runs")
    with pytest.raises(MusicsweepError) as error:
        call(sweep)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.e2e
def test_launch_from_ratings_dry_run_then_launch_then_skip(
    project: Path, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """A rated sweep to a launched follow-up sweep with the CLI alone, on the local backend with the tiny model."""
    _sweep, ids = rated_sweep(project / "runs", "night")
    command = ["launch", "--from-ratings", "night", "--min-rating", "5", "--seeds-per-clip", "1"]
    assert main([*command, "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps lines at the terminal width
    name = "night-fav-" + out.split("sweep night-fav-")[1].split(":")[0]
    assert f"sweep {name}: 2 job(s), 2 to generate, 0 already in store" in out
    assert not (project / "runs" / name / "manifest.json").exists()

    assert main(command) == 0
    assert auto_pull_main([name, "--interval", "1"]) == 0
    follow_up = SweepDir(project / "runs", name)
    manifest = follow_up.read_manifest()
    seeds = {entry.variant["source_clip"]: entry.seed for entry in manifest.jobs.values()}
    assert seeds == {source: new_seeds(source, 1, {1, 2})[0] for source in (ids[0], ids[2])}  # the 5 and the kept
    assert len(list(follow_up.audio.glob("*.wav"))) == 2
    capsys.readouterr()

    assert main(command) == 0  # the same command again: an ordinary sweep, so nothing is generated twice
    assert f"sweep {name}: 2 job(s), 0 to generate, 2 already in store" in " ".join(capsys.readouterr().out.split())


def test_ratings_command_prints_and_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep, ids = rated_sweep(tmp_path / "runs")
    with open(sweep.root / RATINGS_FILE, "a") as handle:
        handle.write("{torn\n")
    clips = {job_id: entry for job_id, entry in sweep.read_manifest().jobs.items()}
    for winner, loser in [(0, 2), (0, 2), (3, 1)]:
        save_choice(
            sweep.root,
            {
                "axis": "guidance_scale",
                "a": {"clip": ids[winner], "value": clips[ids[winner]].variant["guidance_scale"]},
                "b": {"clip": ids[loser], "value": clips[ids[loser]].variant["guidance_scale"]},
                "choice": "a",
                "rater": "ann",
                "time": time.time(),
            },
        )
    assert main(["ratings", str(sweep.root)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {sweep.root / RATINGS_FILE}:7: skipped, not JSON" in out
    assert "ratings of rated: 6 (latest per clip and rater)" in out and "blind A/B" in out
    target = tmp_path / "table.csv"
    assert main(["ratings", str(sweep.root), "--csv", str(target)]) == 0
    assert f"ratings: 6 row(s) -> {target}" in capsys.readouterr().out
    rows = list(csv.DictReader(target.open()))
    assert sorted((r["rater"], r["rating"], r["keep"], r["guidance_scale"]) for r in rows) == sorted(
        [
            ("ann", "5", "", "3"),
            ("ann", "4", "", "3"),
            ("bob", "2", "", "3"),
            ("ann", "2", "kept", "5"),
            ("ann", "5", "", "5"),
            ("bob", "", "discarded", "5"),
        ]
    )
    ab = list(csv.DictReader(target.with_suffix(".ab.csv").open()))
    assert [(r["value"], r["wins"], r["losses"], r["win_rate"]) for r in ab] == [
        ("3", "2", "1", "0.6667"),
        ("5", "1", "2", "0.3333"),
    ]
    assert ab[0]["ci95_low"] == "0.2077" and ab[0]["bradley_terry"] == ""
    assert json.loads((sweep.root / "ab.jsonl").read_text().splitlines()[0])["choice"] == "a"
