"""Same seed, same audio, whoever makes it: each clip draws from its own stream (CPU, float32, tiny model).

A clip made in a batch of 8 is bit-identical to the same clip made alone, with either token loop,
and a long clip resumed from its window checkpoint in another batch is bit-identical to it made
in one go (issue 30).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musicsweep.config import EngineConfig
from musicsweep.engine import load_engine
from musicsweep.engine.checkpoint import StopAtWindow, WindowCheckpoint
from musicsweep.engine.invariance import MIN_ROWS, extra_clips
from musicsweep.engine.streams import ClipStreams
from musicsweep.job import GenerationParams
from musicsweep.store.local import LocalStore
from musicsweep.sweep.plan import jobs_from_variants
from musicsweep.sweep.variants import VariantGenerator
from musicsweep.worker import partial

pytestmark = pytest.mark.heavy  # tiny-model clips generated in-process, alone and in batches

PROMPTS = [
    "warm piano",
    "a much longer prompt about dark techno with rolling hats and a deep bass",
    "x",
    "lofi hip hop beat",
    "epic orchestral trailer",
    "drone",
    "minimal techno",
    "ambient pad with slow strings",
]
SEEDS = [11, 12, 13, 14, 15, 16, 17, 11]  # the last shares a seed with the first, not its prompt


def test_a_clips_draws_depend_on_its_seed_and_window_only():
    batch = ClipStreams([3, 5, 7], codebooks=4, device="cpu").window(2, steps=10)
    alone = ClipStreams([5], codebooks=4, device="cpu").window(2, steps=10)
    assert batch.shape == (10, 12, 1) and alone.shape == (10, 4, 1)
    assert torch.equal(batch[:, 4:8], alone)  # clip 1's rows: b * codebooks + k
    reordered = ClipStreams([5, 7, 3], codebooks=4, device="cpu").window(2, steps=10)
    assert torch.equal(reordered[:, :4], alone)
    assert not torch.equal(ClipStreams([5], 4, "cpu").window(3, 10), alone)  # another window
    assert not torch.equal(batch[:, :4], alone)  # another seed


def test_a_batch_is_padded_to_the_rows_blas_rounds_alike_on_cpu_only():
    assert extra_clips(1, guided=True, device="cpu") == 1  # 2 rows -> 4
    assert extra_clips(1, guided=False, device="cpu") == MIN_ROWS - 1
    assert extra_clips(2, guided=True, device="cpu") == 0
    assert extra_clips(1, guided=True, device="cuda:0") == 0


@pytest.mark.parametrize("token_loop", ["fast", "hf"])
def test_a_clip_made_in_a_batch_of_8_is_bit_identical_to_it_made_alone(token_loop):
    engine = load_engine("tiny", EngineConfig(token_loop=token_loop))
    params = GenerationParams()
    batch = engine.generate(PROMPTS, SEEDS, 2.0, params)
    for index in range(len(PROMPTS)):
        (alone,) = engine.generate(PROMPTS[index : index + 1], SEEDS[index : index + 1], 2.0, params)
        np.testing.assert_array_equal(alone, batch[index])
    halves = engine.generate(PROMPTS[4:], SEEDS[4:], 2.0, params)  # a back-off to batches of 4
    for got, expected in zip(halves, batch[4:], strict=True):
        np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(batch[0], batch[7])  # one seed, two prompts: two clips


def test_without_guidance_a_clip_alone_is_still_the_batched_one():
    engine = load_engine("tiny", EngineConfig())
    params = GenerationParams(guidance_scale=1.0)
    batch = engine.generate(PROMPTS[:3], SEEDS[:3], 1.0, params)
    (alone,) = engine.generate(PROMPTS[1:2], SEEDS[1:2], 1.0, params)
    np.testing.assert_array_equal(alone, batch[1])


def test_a_long_clip_resumed_alone_from_its_window_checkpoint_is_the_uninterrupted_one(tmp_path: Path):
    """50 s (30 + 18 + 2 s windows) made in a batch of 3, killed after window 1; resumed alone from
    the store's checkpoint, the middle clip is bit for bit the one made in one go."""
    vg = VariantGenerator()
    vg.add("prompt", PROMPTS[:3])
    vg.add("duration_s", [50.0])
    jobs = jobs_from_variants(vg.variants(), "streams")
    prompts, seeds = [j.prompt for j in jobs], [j.seed for j in jobs]
    engine = load_engine("tiny", EngineConfig())
    whole = engine.generate(prompts, seeds, 50.0, GenerationParams())
    store = LocalStore(tmp_path)

    def killed_after_first(checkpoint: WindowCheckpoint) -> None:
        partial.save(store, jobs, checkpoint, [1.0] * len(jobs))
        raise StopAtWindow

    with pytest.raises(StopAtWindow):
        engine.generate(prompts, seeds, 50.0, GenerationParams(), on_window=killed_after_first)
    resume = partial.load(store, jobs[1:2])
    assert resume is not None and resume.checkpoint.windows_done == 1
    (resumed,) = engine.generate(prompts[1:2], seeds[1:2], 50.0, GenerationParams(), resume.checkpoint)
    np.testing.assert_array_equal(resumed, whole[1])
