"""Curating a finished sweep: ratings and blind A/B choices, their statistics, the local server that
records them, and the follow-up sweep built from the favourites."""
