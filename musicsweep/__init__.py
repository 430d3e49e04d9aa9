"""musicsweep: launch sweeps of MusicGen text-to-music generation."""

from musicsweep.cli.run import run_sweep
from musicsweep.errors import MusicsweepError
from musicsweep.sweep.variants import VariantGenerator

__all__ = ["MusicsweepError", "VariantGenerator", "run_sweep"]
