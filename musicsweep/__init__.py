"""musicsweep: launch sweeps of MusicGen text-to-music generation."""

from musicsweep.errors import MusicsweepError
from musicsweep.sweep.plan import run_sweep
from musicsweep.sweep.variants import VariantGenerator

__all__ = ["MusicsweepError", "VariantGenerator", "run_sweep"]
