"""`engine.token_loop: fast` against transformers' generate: the same codes, token for token, on CPU.

The fast loop feeds `CodeSampler` the same rows in the same order as transformers does, and the
same draws from each clip's stream, so with the same seeds both token loops draw the same codes,
whether greedy (top_k=1) or sampled; windows after the first check the long-form continuation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicsweep.config import EngineConfig
from musicsweep.engine import load_engine, steps
from musicsweep.engine.loading import torch_threads
from musicsweep.engine.longform import Window, generate_codes, plan_windows
from musicsweep.engine.sampling import CodeSampler, stream_sampling
from musicsweep.engine.steps import StaticSteps, StepsCache
from musicsweep.engine.streams import ClipStreams
from musicsweep.engine.tiny import build_small_sized_model, build_tiny_model
from musicsweep.engine.token_loop import TokenLoop, run_token_loop
from musicsweep.engine.transformer import CachedTransformer
from musicsweep.job import GenerationParams

pytestmark = (
    pytest.mark.heavy
)  # token-for-token equality against transformers generate, up to a musicgen-small-sized model

GREEDY = GenerationParams(top_k=1)
PROMPTS = ["warm piano", "a much longer prompt about dark techno"]
SEEDS = [11, 12]
# 2 s windows continued by 1 s strides: 100 + 50 + 30 frames, the later windows prompted with 50
SHORT_WINDOWS = plan_windows(180, 50, 1.0, window_s=2.0)


@pytest.fixture(autouse=True)
def one_thread():
    """As the engine runs the tiny model: on a shared host, two threads spinning for each other are 10x slower."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model()


def both_loops(model, tokenizer, windows: list[Window], params: GenerationParams, make_steps=None):
    inputs = dict(tokenizer(text=PROMPTS, padding=True, return_tensors="pt"))
    streams = ClipStreams(SEEDS, int(model.decoder.num_codebooks), "cpu")
    expected = generate_codes(model, inputs, windows, stream_sampling(params, streams))
    extra = {} if make_steps is None else {"make_steps": make_steps}
    fast = run_token_loop(CachedTransformer(model), inputs, windows, CodeSampler(params), streams, **extra)
    return expected, fast


@pytest.mark.parametrize("params", [GREEDY, GenerationParams()], ids=["greedy", "sampled"])
def test_tiny_model_fast_codes_equal_transformers_generate(tiny, params):
    expected, fast = both_loops(*tiny, SHORT_WINDOWS, params)
    assert [w.context_frames for w in SHORT_WINDOWS] == [0, 50, 50]
    assert fast.shape == expected.shape == (2, 4, 180)
    assert torch.equal(fast, expected)


def test_tiny_model_fast_codes_equal_without_guidance(tiny):
    expected, fast = both_loops(*tiny, SHORT_WINDOWS, GenerationParams(guidance_scale=1.0))
    assert torch.equal(fast, expected)


def test_static_steps_the_cuda_graphs_replay_equal_transformers_generate(tiny, monkeypatch):
    """The fixed-shape step (masked cache buckets, padded text) that CUDA graphs capture, run eagerly."""
    monkeypatch.setattr(steps, "BUCKET", 16)  # cross several buckets within each window
    cache = StepsCache(StaticSteps, capacity=2 * 50 + 3)
    expected, fast = both_loops(*tiny, SHORT_WINDOWS, GREEDY, make_steps=cache)
    assert torch.equal(fast, expected)
    first = cache.steps
    expected, fast = both_loops(*tiny, SHORT_WINDOWS, GenerationParams(), make_steps=cache)
    assert cache.steps is first  # the same batch shape reuses the buffers (and on CUDA the graphs)
    assert torch.equal(fast, expected)


def test_small_sized_model_fast_codes_equal_transformers_generate():
    """musicgen-small's shapes (random weights, float32): 10 frames, then 2 more prompted with 5."""
    model, tokenizer = build_small_sized_model()
    windows = plan_windows(12, 50, 0.1, window_s=0.2)
    assert windows == [Window(0, 10), Window(5, 2)]
    expected, fast = both_loops(model, tokenizer, windows, GREEDY)
    assert torch.equal(fast, expected)


def test_engine_fast_and_hf_give_the_same_wav_and_a_seed_reproduces_it():
    """Through the engine at real window sizes: 31 s is a 30 s window and a continuation window."""
    fast = load_engine("tiny", EngineConfig(token_loop="fast"))
    hf = load_engine("tiny", EngineConfig(token_loop="hf"))
    first = fast.generate(PROMPTS, [3, 4], 31.0, GenerationParams())
    again = fast.generate(PROMPTS, [3, 4], 31.0, GenerationParams())
    reference = hf.generate(PROMPTS, [3, 4], 31.0, GenerationParams())
    for clip, repeat, hf_clip in zip(first, again, reference, strict=True):
        assert clip.shape == (31 * 32000,)
        assert np.array_equal(clip, repeat) and np.array_equal(clip, hf_clip)


def test_every_musicgen_architecture_runs_on_the_fast_loop():
    melody, _ = build_tiny_model(melody=True)
    assert TokenLoop.supports(build_tiny_model()[0]) and TokenLoop.supports(melody)


def test_engine_token_loop_setting_is_fast_or_hf():
    from musicsweep.config import validate_engine
    from musicsweep.errors import MusicsweepError

    assert EngineConfig().token_loop == "fast"
    validate_engine(EngineConfig(token_loop="hf"), "musicsweep.yaml: key 'engine'")
    with pytest.raises(MusicsweepError, match=r"engine'\.token_loop: expected one of \['fast', 'hf'\]"):
        validate_engine(EngineConfig(token_loop="compiled"), "musicsweep.yaml: key 'engine'")


def test_cuda_devices_get_graphed_steps_over_a_whole_window_in_whole_buckets(tiny):
    """Checked without a GPU: building the loop allocates nothing on the device until the first batch."""
    from musicsweep.engine.steps import GraphedSteps, eager_steps

    on_gpu = TokenLoop(tiny[0], "cuda:0", window_frames=1500).make_steps
    assert isinstance(on_gpu, StepsCache) and on_gpu.steps_class is GraphedSteps
    assert on_gpu.capacity == 1536 and on_gpu.capacity % steps.BUCKET == 0  # 1500 frames + 3 delay steps
    assert TokenLoop(tiny[0], "cpu", window_frames=1500).make_steps is eager_steps
