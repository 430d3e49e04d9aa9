"""MusicGen generation: model loading, batched clips and long-form continuation."""

from musicsweep.engine.generate import MusicEngine, load_engine

__all__ = ["MusicEngine", "load_engine"]
