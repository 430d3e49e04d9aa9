"""Ray: one Ray job per launch, submitted through the Jobs API, one actor per worker.

Ray (`ray[default]`, the `ray` extra) is imported only in this package, and only inside functions.
"""
