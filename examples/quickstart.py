"""The quickstart sweep: 2 prompts x 2 durations on the built-in tiny model.

uv run --extra worker python examples/quickstart.py && uv run python -m musicsweep.auto_pull first-sweep
"""

import sys

from musicsweep import MusicsweepError, VariantGenerator, run_sweep

vg = VariantGenerator()
vg.add("prompt", ["lofi hip hop with warm piano", "epic orchestral trailer"])
vg.add("duration_s", [10, 20])
vg.add("model", ["tiny"])
vg.add("seed", lambda duration_s: [duration_s * 7])  # dependent value

if __name__ == "__main__":
    try:
        run_sweep(vg, name="first-sweep")
    except MusicsweepError as error:
        sys.exit(f"error: {error}")
