"""Window checkpoints: a batch stopped at a window boundary resumes to the same clips, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from musicsweep.config import EngineConfig
from musicsweep.engine import load_engine
from musicsweep.engine.checkpoint import StopAtWindow, WindowCheckpoint
from musicsweep.job import GenerationParams

PROMPTS, SEEDS, DURATION_S = ["slow ambient drone", "fast techno"], [5, 6], 50.0  # 30 + 18 + 2 s


@pytest.mark.parametrize("decoder", ["fast", "hf"])
def test_resume_after_a_window_equals_the_uninterrupted_batch(decoder: str) -> None:
    engine = load_engine("tiny", EngineConfig(decoder=decoder))
    seen: list[WindowCheckpoint] = []
    whole = engine.generate(PROMPTS, SEEDS, DURATION_S, GenerationParams(), on_window=seen.append)
    assert [(c.windows_done, c.windows_total) for c in seen] == [(1, 3), (2, 3), (3, 3)]

    def stop_after_first(checkpoint: WindowCheckpoint) -> None:
        raise StopAtWindow

    with pytest.raises(StopAtWindow):
        engine.generate(PROMPTS, SEEDS, DURATION_S, GenerationParams(), on_window=stop_after_first)
    resumed_windows: list[int] = []
    resumed = engine.generate(
        PROMPTS, SEEDS, DURATION_S, GenerationParams(), resume=seen[0],
        on_window=lambda c: resumed_windows.append(c.windows_done),
    )
    assert resumed_windows == [2, 3]
    for a, b in zip(whole, resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_another_shape_is_ignored() -> None:
    engine = load_engine("tiny", EngineConfig())
    seen: list[WindowCheckpoint] = []
    whole = engine.generate(PROMPTS, SEEDS, DURATION_S, GenerationParams(), on_window=seen.append)
    single = engine.generate(PROMPTS[:1], SEEDS[:1], DURATION_S, GenerationParams(), on_window=seen.append)
    # a two-clip checkpoint offered to a one-clip batch: generated from scratch, as without it
    again = engine.generate(PROMPTS[:1], SEEDS[:1], DURATION_S, GenerationParams(), resume=seen[0])
    np.testing.assert_array_equal(single[0], again[0])
    assert len(whole) == 2
