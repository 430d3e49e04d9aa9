"""Hydra plugins `hydra/launcher=musicsweep` and `hydra/sweeper=musicsweep`: a multirun becomes one sweep."""
