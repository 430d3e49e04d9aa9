"""Win rates with Wilson score intervals, and Bradley–Terry strengths by Hunter's MM algorithm.

Wilson (1927): the interval of p where |p_hat - p| <= z * sqrt(p (1 - p) / n); unlike the Wald
interval it stays inside [0, 1] and is sensible for 0 or n wins, which small listening tests hit.
Bradley–Terry: P(i beats j) = p_i / (p_i + p_j). Hunter (2004), "MM algorithms for generalized
Bradley–Terry models", Ann. Statist. 32(1): p_i <- W_i / sum_j n_ij / (p_i + p_j) climbs the
likelihood every step and converges to the MLE when, for every split of the values into two groups,
some value in each group beat one in the other (his Assumption 1); otherwise no finite MLE exists.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


def wilson_interval(wins: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = wins / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _reachable(start: Hashable, edges: dict[Hashable, set[Hashable]]) -> set[Hashable]:
    seen, stack = {start}, [start]
    while stack:
        for following in edges.get(stack.pop(), ()):
            if following not in seen:
                seen.add(following)
                stack.append(following)
    return seen


def bradley_terry(
    wins: dict[tuple[Hashable, Hashable], float], tolerance: float = 1e-10, max_iterations: int = 100_000
) -> dict[Hashable, float] | None:
    """Strengths (summing to 1) from `wins[(i, j)]` = times i beat j; None when no finite MLE exists.

    Hunter's Assumption 1 is exactly "the beat-graph is strongly connected": checked first, so the
    iteration only runs when it converges.
    """
    items = sorted({item for pair in wins for item in pair}, key=str)
    beats: dict[Hashable, set[Hashable]] = {}
    for (winner, loser), count in wins.items():
        if count > 0:
            beats.setdefault(winner, set()).add(loser)
    if len(items) < 2 or any(_reachable(item, beats) != set(items) for item in items):
        return None
    total_wins = {i: sum(count for (w, _), count in wins.items() if w == i) for i in items}
    games = {(i, j): wins.get((i, j), 0) + wins.get((j, i), 0) for i in items for j in items if i != j}
    strength = {item: 1.0 / len(items) for item in items}
    for _ in range(max_iterations):
        updated = {
            i: total_wins[i] / sum(games[(i, j)] / (strength[i] + strength[j]) for j in items if j != i) for i in items
        }
        scale = sum(updated.values())
        updated = {i: value / scale for i, value in updated.items()}
        change = max(abs(updated[i] - strength[i]) for i in items)
        strength = updated
        if change < tolerance:
            break
    return strength


def pairwise_wins(outcomes: Iterable[tuple[Hashable, Hashable]]) -> dict[tuple[Hashable, Hashable], float]:
    """(winner, loser) pairs counted into the `wins` mapping `bradley_terry` takes."""
    wins: dict[tuple[Hashable, Hashable], float] = {}
    for winner, loser in outcomes:
        wins[(winner, loser)] = wins.get((winner, loser), 0) + 1
    return wins
