"""Win-rate intervals and Bradley–Terry strengths against published and hand-checked values."""

from __future__ import annotations

import pytest

from musicsweep.curate.ab import results_of
from musicsweep.curate.stats import bradley_terry, pairwise_wins, wilson_interval


@pytest.mark.parametrize(
    ("wins", "trials", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of seven
        # methods", Statistics in Medicine 17:857-872, Table II, method 3 (Wilson score, no continuity
        # correction), examples (a)-(d).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe_1998(wins: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(wins, trials) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_wilson_interval_without_trials_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bradley_terry_recovers_a_saturated_fit() -> None:
    """Counts chosen so that each pair's observed share equals p_i / (p_i + p_j) for p = (4, 2, 1) / 7.

    Then the likelihood equations W_i = sum_j n_ij p_i / (p_i + p_j) (Hunter 2004, eq. 3) hold exactly at
    p, so p is the MLE: by hand, A: 2 + 4 = 3*(4/6) + 5*(4/5); B: 1 + 2 = 3*(2/6) + 3*(2/3); C: 1 + 1 = 5/5 + 3/3.
    """
    wins = {("A", "B"): 2, ("B", "A"): 1, ("A", "C"): 4, ("C", "A"): 1, ("B", "C"): 2, ("C", "B"): 1}
    strength = bradley_terry(wins)
    assert strength == {"A": pytest.approx(4 / 7, abs=1e-7), "B": pytest.approx(2 / 7, abs=1e-7)} | {
        "C": pytest.approx(1 / 7, abs=1e-7)
    }


def test_bradley_terry_of_two_values_is_the_win_ratio() -> None:
    strength = bradley_terry({("x", "y"): 3, ("y", "x"): 1})
    assert strength is not None and strength["x"] / strength["y"] == pytest.approx(3.0, rel=1e-6)


def test_bradley_terry_needs_every_value_to_win_and_lose() -> None:
    """Hunter's Assumption 1: a value that never lost has no finite strength."""
    assert bradley_terry({("A", "B"): 2, ("B", "C"): 1, ("C", "B"): 1, ("A", "C"): 1}) is None


def choice(a: float, b: float, picked: str) -> dict:
    return {"axis": "guidance_scale", "a": {"value": a}, "b": {"value": b}, "choice": picked}


def test_results_count_wins_losses_and_ties_per_value() -> None:
    records = [choice(3, 5, "a"), choice(5, 3, "b"), choice(3, 5, "same"), choice(1, 3, "b"), choice(1, 5, "a")]
    results = results_of("guidance_scale", records)
    counts = {v.value: (v.wins, v.losses, v.ties) for v in results.values}
    assert counts == {"3": (3, 0, 1), "5": (0, 3, 1), "1": (1, 1, 0)}
    assert results.choices == 5
    assert results.note.startswith("Bradley–Terry: not estimable")  # 3 never lost
    assert [v.value for v in results.values] == ["3", "1", "5"]  # by win rate when no strengths


def test_results_rank_by_bradley_terry_when_estimable() -> None:
    outcomes = [("A", "B")] * 2 + [("B", "A")] + [("A", "C")] * 4 + [("C", "A")] + [("B", "C")] * 2 + [("C", "B")]
    records = [{"axis": "k", "a": {"value": w}, "b": {"value": lose}, "choice": "a"} for w, lose in outcomes]
    results = results_of("k", records)
    assert [(v.value, round(v.strength, 4)) for v in results.values] == [("A", 0.5714), ("B", 0.2857), ("C", 0.1429)]
    assert pairwise_wins(outcomes)[("A", "C")] == 4
