"""musicsweep: launch sweeps of MusicGen text-to-music generation."""

from musicsweep.errors import MusicsweepError
from musicsweep.sweep import run_sweep
from musicsweep.variants import VariantGenerator

__all__ = ["MusicsweepError", "VariantGenerator", "run_sweep"]
