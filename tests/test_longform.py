"""Long-form continuation: window plan, code-level conditioning, exact length, long clips batch together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicsweep.config import EngineConfig
from musicsweep.engine import load_engine, token_loop
from musicsweep.engine.codec import codes_to_audio
from musicsweep.engine.longform import Window, plan_windows
from musicsweep.engine.tiny import build_tiny_model
from musicsweep.job import GenerationParams

pytestmark = pytest.mark.heavy  # long clips and the melody architecture, generated in-process


def test_window_plan_for_70_and_300_seconds():
    assert plan_windows(70 * 50, 50, 18.0) == [Window(0, 1500), Window(600, 900), Window(600, 900), Window(600, 200)]
    assert plan_windows(10 * 50, 50, 18.0) == [Window(0, 500)]
    long = plan_windows(300 * 50, 50, 18.0)
    assert len(long) == 16 and sum(w.new_frames for w in long) == 15000
    assert [w.context_frames for w in plan_windows(40 * 50, 50, 10.0)] == [0, 1000]
    with pytest.raises(ValueError):
        plan_windows(100, 50, 30.0)


def spy_on_windows(engine, loop: str, monkeypatch) -> list[tuple[int, tuple[int, int] | None]]:
    """Record each window's (decode steps, prompt shape as transformers takes it: batch * codebooks x frames)."""
    calls = []
    if loop == "hf":
        model = engine.loaded.model
        original = model.generate

        def spy(**kwargs):
            prompt = kwargs.get("decoder_input_ids")
            calls.append((kwargs["max_new_tokens"], None if prompt is None else tuple(prompt.shape)))
            return original(**kwargs)

        model.generate = spy
    else:
        original = token_loop.run_window

        def spy(steps, delayed, sampler, guided, draws):
            batch, codebooks, length = delayed.codes.shape
            prompt = (batch * codebooks, delayed.context) if delayed.context else None
            calls.append((length - delayed.context - 1, prompt))
            assert draws.shape == (length - delayed.context - 1, batch * codebooks, 1)  # one draw per step and row
            return original(steps, delayed, sampler, guided, draws)

        monkeypatch.setattr(token_loop, "run_window", spy)
    return calls


@pytest.mark.parametrize("loop", ["fast", "hf"])
def test_70_second_clips_are_four_windows_and_exactly_70_seconds(loop, monkeypatch):
    engine = load_engine("tiny", EngineConfig(token_loop=loop))
    model = engine.loaded.model
    calls = spy_on_windows(engine, loop, monkeypatch)
    clips = engine.generate(["slow ambient drone", "fast techno"], [5, 6], 70.0, GenerationParams())
    # 30 + 18 + 18 + 4 seconds of new frames (+3 for the codebook delay); the batch of two long
    # clips shares each call, conditioned on the last 12 s (600 frames) of codes per codebook.
    assert calls == [(1503, None), (903, (8, 600)), (903, (8, 600)), (203, (8, 600))]
    assert [clip.shape for clip in clips] == [(70 * 32000,), (70 * 32000,)]
    for clip in clips:
        assert np.isfinite(clip).all()
        # every window contributed sound: no silent stretch where a continuation was lost
        seconds = np.abs(clip).reshape(70, 32000).max(axis=1)
        assert seconds.min() > 0
    assert "decode" not in vars(model.audio_encoder)


def test_decoding_in_spans_equals_one_decode_of_the_whole_clip():
    """Spans with code context on both sides give the single decode's audio: no seams at span edges."""
    model, _ = build_tiny_model()
    codes = torch.randint(0, 2048, (1, 4, 3500), generator=torch.Generator().manual_seed(7))  # 70 s
    whole = codes_to_audio(model, codes, span=codes.shape[-1])[0]
    spans = codes_to_audio(model, codes)[0]
    assert spans.shape == whole.shape == (1, 3500 * 640)  # (channels, samples)
    assert torch.max(torch.abs(spans - whole)) <= 1e-6 * torch.max(torch.abs(whole))


def test_melody_architecture_loads_from_a_folder_and_continues_text_only(tmp_path):
    """-melody prepends its conditioning to the transformer's inputs: continuation and prefill still hold."""
    model, tokenizer = build_tiny_model(melody=True)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)  # no feature extractor: text-only needs no torchaudio
    engine = load_engine(str(tmp_path), EngineConfig(dtype="float32"))
    assert type(engine.loaded.model).__name__ == "MusicgenMelodyForConditionalGeneration"
    clips = engine.generate(["slow ambient drone", "fast techno"], [5, 6], 40.0, GenerationParams())
    assert [clip.shape for clip in clips] == [(40 * 32000,), (40 * 32000,)]
    for clip in clips:
        seconds = np.abs(clip).reshape(40, 32000).max(axis=1)
        assert np.isfinite(clip).all() and seconds.min() > 0
    assert not np.array_equal(clips[0], clips[1])
