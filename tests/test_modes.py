"""MusicGen's other modes in the engine: stereo, audio prompts, melody conditioning (CPU, float32, tiny models).

The fast token loop covers stereo, audio prompts and melody models and must draw transformers'
codes; an audio prompt's codes must be those transformers' own `generate(input_values=...)`
continues from; a melody conditions each window on its own span.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from musicsweep.config import EngineConfig
from musicsweep.engine import load_engine, steps
from musicsweep.engine.checkpoint import StopAtWindow
from musicsweep.engine.inputs import ClipInputs, MelodyConditioning, encode_prompts
from musicsweep.engine.loading import torch_threads
from musicsweep.engine.longform import capture_codes, captured_window, generate_codes, plan_windows
from musicsweep.engine.sampling import CodeSampler, stream_sampling
from musicsweep.engine.steps import StaticSteps, StepsCache
from musicsweep.engine.streams import ClipStreams
from musicsweep.engine.tiny import build_tiny_model
from musicsweep.engine.token_loop import TokenLoop, run_token_loop
from musicsweep.engine.transformer import CachedTransformer
from musicsweep.job import GenerationParams

pytestmark = pytest.mark.heavy  # melody, stereo and audio-prompt models built and run in-process

GREEDY = GenerationParams(top_k=1)
PROMPTS = ["warm piano", "a much longer prompt about dark techno"]


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def greedy(model) -> Callable[[int, int], dict]:
    """Greedy windows: the draws are never read."""
    return stream_sampling(GREEDY, ClipStreams([0, 0], int(model.decoder.num_codebooks), "cpu"))


def tone(seconds: float, channels: int, pitch: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * 32000)) / 32000
    return np.stack([0.3 * np.sin(2 * np.pi * pitch * (c + 1) * t) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize("stereo", [False, True], ids=["mono", "stereo"])
@pytest.mark.parametrize("params", [GREEDY, GenerationParams()], ids=["greedy", "sampled"])
def test_fast_loop_continues_an_audio_prompt_with_transformers_codes(stereo, params):
    """A 0.4 s prompt (20 frames) is the first 2 s window's context; 1 s strides follow: 180 frames."""
    model, tokenizer = build_tiny_model(stereo=stereo)
    assert TokenLoop.supports(model)
    text = dict(tokenizer(text=PROMPTS, padding=True, return_tensors="pt"))
    prompt = encode_prompts(model, [tone(0.41, 2), tone(0.41, 1, 330.0)], "cpu")
    assert prompt.shape == (2, 8 if stereo else 4, 20)  # whole frames only
    windows = plan_windows(180, 50, 1.0, window_s=2.0, prompt_frames=20)
    assert [(w.context_frames, w.new_frames) for w in windows] == [(20, 80), (50, 50), (50, 30)]
    streams = ClipStreams([5, 6], int(model.decoder.num_codebooks), "cpu")
    expected = generate_codes(model, text, windows, stream_sampling(params, streams), prompt)
    fast = run_token_loop(CachedTransformer(model), text, windows, CodeSampler(params), streams, codes=prompt)
    assert fast.shape == expected.shape == (2, 8 if stereo else 4, 180)
    assert torch.equal(fast[:, :, :20], prompt)
    assert torch.equal(fast, expected)


@pytest.mark.parametrize("stereo", [False, True], ids=["mono", "stereo"])
def test_audio_prompt_codes_are_those_transformers_encodes_from_input_values(stereo):
    model, tokenizer = build_tiny_model(stereo=stereo)
    text = dict(tokenizer(text=PROMPTS, padding=True, return_tensors="pt"))
    audio = [tone(0.4, 2), tone(0.4, 2, 330.0)]
    prompt = encode_prompts(model, audio, "cpu")
    windows = plan_windows(40, 50, 1.0, window_s=2.0, prompt_frames=20)
    ours = generate_codes(model, text, windows, greedy(model), prompt)
    # a stereo model hears both channels; a mono one their mean
    values = torch.from_numpy(np.stack([a if stereo else a.mean(axis=0, keepdims=True) for a in audio]))
    with capture_codes(model) as captured, torch.no_grad():
        model.generate(**text, input_values=values, **greedy(model)(0, 23), max_new_tokens=20 + 4 - 1)
    assert torch.equal(captured_window(captured), ours)


@pytest.mark.parametrize("stereo", [False, True], ids=["mono", "stereo"])
@pytest.mark.parametrize("params", [GREEDY, GenerationParams()], ids=["greedy", "sampled"])
def test_fast_loop_conditions_melody_models_with_transformers_codes(stereo, params, monkeypatch):
    """A melody looped under three windows (2 s, continued by 1 s strides), after a 0.4 s audio prompt;
    then one greedy window without a melody through the fixed-shape steps CUDA graphs replay, eagerly."""
    model, tokenizer = build_tiny_model(melody=True, stereo=stereo)
    assert TokenLoop.supports(model)
    text = dict(tokenizer(text=PROMPTS, padding=True, return_tensors="pt"))
    melody = MelodyConditioning([tone(1.5, 1), tone(1.5, 2, 330.0)], 32000, 50, "cpu")
    prompt = encode_prompts(model, [tone(0.41, 2), tone(0.41, 1, 330.0)], "cpu")
    windows = plan_windows(180, 50, 1.0, window_s=2.0, prompt_frames=20)
    streams = ClipStreams([5, 6], int(model.decoder.num_codebooks), "cpu")
    expected = generate_codes(model, text, windows, stream_sampling(params, streams), prompt, conditioning=melody)
    transformer = CachedTransformer(model)
    fast = run_token_loop(transformer, text, windows, CodeSampler(params), streams, codes=prompt, melody=melody)
    assert fast.shape == (2, 8 if stereo else 4, 180)
    assert torch.equal(fast, expected)

    # greedy: the masked bucket attention rounds apart from eager's, enough to flip a sampled code
    monkeypatch.setattr(steps, "BUCKET", 16)  # cross several buckets within each window
    static = StepsCache(StaticSteps, capacity=16)  # grows to the prefix and window
    one = plan_windows(60, 50, 1.0, window_s=2.0)
    expected = generate_codes(model, text, one, stream_sampling(GREEDY, streams))
    fast = run_token_loop(transformer, text, one, CodeSampler(GREEDY), streams, static)
    assert torch.equal(fast, expected)


def test_melody_conditions_each_window_on_its_own_span():
    model, tokenizer = build_tiny_model(melody=True)
    text = dict(tokenizer(text=PROMPTS, padding=True, return_tensors="pt"))
    windows = plan_windows(180, 50, 1.0, window_s=2.0)
    a_note, e_note = tone(1.5, 1, 220.0), tone(1.5, 2, 330.0)  # pitch classes A and E
    melody = MelodyConditioning([a_note, e_note], 32000, 50, "cpu")
    spans = []

    def conditioning(start: int, end: int) -> dict:
        spans.append((start, end))
        return melody(start, end)

    sampling = greedy(model)
    with_melody = generate_codes(model, text, windows, sampling, conditioning=conditioning)
    assert spans == [(0, 100), (50, 150), (100, 180)]
    features = melody.features(100, 180)
    assert features.shape == (2, 13, 12) and torch.equal(features.sum(-1), torch.ones(2, 13))  # 1 + 51200 // 4096
    other = MelodyConditioning([e_note, a_note], 32000, 50, "cpu")
    swapped = generate_codes(model, text, windows, sampling, conditioning=other)
    assert with_melody.shape == (2, 4, 180)
    assert not torch.equal(with_melody, swapped)


@pytest.mark.parametrize("name", ["tiny-stereo", "tiny-melody", "tiny-stereo-melody"])
@pytest.mark.parametrize("keep", [False, True], ids=["prompt-dropped", "prompt-kept"])
def test_engine_clips_have_exact_length_and_channels(name, keep):
    engine = load_engine(name, EngineConfig(token_loop="fast"))
    melodies = [tone(3.0, 1), tone(1.0, 2)] if "melody" in name else None
    inputs = ClipInputs(melodies, [tone(0.5, 2), tone(0.5, 1)], keep)
    clips = engine.generate(PROMPTS, [1, 2], 2.0, GenerationParams(), inputs=inputs)
    samples = 64000 if keep else 64000 - 16000
    shape = (samples, 2) if "stereo" in name else (samples,)
    assert [clip.shape for clip in clips] == [shape, shape]
    assert all(np.isfinite(clip).all() and np.abs(clip).max() > 0 for clip in clips)


@pytest.mark.parametrize("name", ["tiny", "tiny-melody"])
def test_long_clip_with_inputs_resumed_after_a_window_equals_the_uninterrupted_batch(name):
    """31 s with a 1 s audio prompt (and a melody): a 30 s window, then a continuation window."""
    engine = load_engine(name, EngineConfig())
    melodies = [tone(4.0, 1)] if "melody" in name else None
    inputs = ClipInputs(melodies, [tone(1.0, 1)], False)
    whole = engine.generate(PROMPTS[:1], [9], 31.0, GenerationParams(), inputs=inputs)
    saved = []

    def stop_after_first(checkpoint):
        saved.append(checkpoint)
        raise StopAtWindow

    with pytest.raises(StopAtWindow):
        engine.generate(PROMPTS[:1], [9], 31.0, GenerationParams(), on_window=stop_after_first, inputs=inputs)
    (checkpoint,) = saved
    assert (checkpoint.windows_done, checkpoint.windows_total, checkpoint.codes.shape[-1]) == (1, 2, 1500)
    resumed = engine.generate(PROMPTS[:1], [9], 31.0, GenerationParams(), resume=checkpoint, inputs=inputs)
    assert resumed[0].shape == (30 * 32000,)
    assert np.array_equal(resumed[0], whole[0])
