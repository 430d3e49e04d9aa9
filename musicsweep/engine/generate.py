"""Generate batches of clips of exactly the requested length from a loaded MusicGen.

Reproducibility: each clip draws its samples from its own random stream, keyed by its seed, its
window and the step (`engine.streams`). The same clip (prompt, seed, duration, parameters, inputs)
on the same model, device and dtype gives the same WAV bit for bit, whatever its batch mates, their
order and the batch size (a back-off to smaller batches included), and whether it was made in one
go or resumed from a window checkpoint (`engine.checkpoint`) in another batch
(tests/test_streams.py), given logits that do not depend on the batch either, which
`engine.invariance` arranges in float32 on CPU (its docstring says where it stops). Both token loops
(`engine.token_loop`) draw the same codes from the same logits, so in float32 on CPU they give the
same WAVs too (tests/test_token_loop.py), while other dtypes and devices may round the logits apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from musicsweep.config import EngineConfig
from musicsweep.engine.batching import auto_batch_size, check_injected_failure
from musicsweep.engine.checkpoint import WindowCallback, WindowCheckpoint
from musicsweep.engine.codec import SpanCodec
from musicsweep.engine.inputs import ClipInputs, MelodyConditioning, encode_prompts
from musicsweep.engine.invariance import TEXT_TOKENS, extra_clips, padded
from musicsweep.engine.loading import LoadedModel, load_model, torch_threads
from musicsweep.engine.longform import WINDOW_S, Window, generate_codes, plan_windows
from musicsweep.engine.normalize import normalize
from musicsweep.engine.sampling import is_guided, stream_sampling
from musicsweep.engine.streams import ClipStreams
from musicsweep.job import GenerationParams


class MusicEngine:
    """A model loaded once per process, generating batches of same-length clips.

    `streams` makes a batch's random draws from its seeds (`engine.streams`); benchmarks/engine.py
    swaps in one shared stream to time what per-clip streams cost."""

    def __init__(self, loaded: LoadedModel, config: EngineConfig, streams: type[ClipStreams] = ClipStreams) -> None:
        self.loaded = loaded
        self.config = config
        self.streams = streams
        self._fast_loop: Any = None

    @property
    def sampling_rate(self) -> int:
        return self.loaded.sampling_rate

    def auto_batch_size(self) -> int:
        window_frames = int(WINDOW_S * self.loaded.frame_rate) + self.loaded.num_codebooks
        return auto_batch_size(self.loaded.model, self.loaded.device, self.loaded.dtype, window_frames)

    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        duration_s: float,
        params: GenerationParams,
        resume: WindowCheckpoint | None = None,
        on_window: WindowCallback | None = None,
        inputs: ClipInputs | None = None,
    ) -> list[np.ndarray]:
        """Return one float32 array per prompt: (samples,) from a mono model, (samples, 2) from a stereo one.

        A clip is exactly `duration_s * sampling_rate` samples, less its audio prompt's when
        `inputs` drops it. `resume` (a checkpoint of these clips, made in any batch) skips the
        windows it holds; `on_window` gets a checkpoint after each window and may raise
        `StopAtWindow` to end there. `inputs` holds melodies and audio prompts
        (`engine.inputs`).
        """
        import torch

        count = len(prompts)
        check_injected_failure(count)
        inputs = inputs or ClipInputs()
        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        device = self.loaded.device
        # copies of the first clip that keep the logits batch-invariant, dropped before decoding
        extra = extra_clips(count, is_guided(params.guidance_scale), device)
        prompts, seeds = padded(prompts, extra), padded(seeds, extra)
        melodies, audio_prompts = padded(inputs.melodies, extra), padded(inputs.audio_prompts, extra)
        inputs = replace(inputs, melodies=melodies, audio_prompts=audio_prompts)
        total_frames = int(np.ceil(duration_s * self.loaded.frame_rate))
        codes = encode_prompts(model, inputs.audio_prompts, device) if inputs.audio_prompts else None
        prompt_frames = 0 if codes is None else codes.shape[-1]
        stride_s = params.extend_stride_s
        windows = plan_windows(total_frames, self.loaded.frame_rate, stride_s, prompt_frames=prompt_frames)
        text = tokenizer(text=prompts, padding=True, pad_to_multiple_of=TEXT_TOKENS, return_tensors="pt").to(device)
        done = 0
        if resume is not None and self.fits(resume, count, windows):
            codes, done = resume.codes.to(device), resume.windows_done
            codes = torch.cat([codes, codes[:1].expand(extra, -1, -1)]) if extra else codes
        spans = SpanCodec(model, total_frames, background=device == "cpu")
        counter = iter(range(done + 1, len(windows) + 1))

        def after_window(so_far: Any) -> None:
            so_far = so_far[:count]
            spans.feed(so_far)
            if on_window is not None:
                checkpoint = WindowCheckpoint(next(counter), len(windows), so_far.cpu().clone())
                on_window(checkpoint)

        melody = None
        if inputs.melodies:
            melody = MelodyConditioning(inputs.melodies, self.sampling_rate, self.loaded.frame_rate, device)
        with torch_threads(self.loaded.threads):
            try:
                if codes is not None:
                    spans.feed(codes[:count])  # the prompt's or checkpoint's windows decode while the rest generate
                rest = windows[done:]
                codes = self.generate_codes(dict(text), rest, params, seeds, codes, after_window, melody, done)
                audio = spans.finish(codes[:count])
            finally:
                spans.close()
        skip = 0 if inputs.prompt_in_output else inputs.prompt_samples
        samples = int(round(duration_s * self.sampling_rate)) - skip
        return [self._finish(clip.float().cpu().numpy()[:, skip:], samples) for clip in audio]

    def fits(self, checkpoint: WindowCheckpoint, batch: int, windows: list[Window]) -> bool:
        """A checkpoint of this batch's shape, ending at one of its window boundaries, short of the last."""
        frames = windows[0].context_frames + sum(w.new_frames for w in windows[: checkpoint.windows_done])
        shape = (batch, self.loaded.num_codebooks, frames)
        return (
            checkpoint.windows_total == len(windows)
            and 0 < checkpoint.windows_done < len(windows)
            and (tuple(checkpoint.codes.shape) == shape)
        )

    def generate_codes(
        self,
        inputs: dict[str, Any],
        windows: list[Window],
        params: GenerationParams,
        seeds: list[int],
        codes: Any = None,
        on_window: Callable[[Any], None] | None = None,
        melody: MelodyConditioning | None = None,
        first: int = 0,
    ) -> Any:
        """The undelayed codes of every window (`windows[0]` is the clip's window `first`), by
        `engine.token_loop`: fast where `TokenLoop.supports` the model (MusicGen, -stereo and -melody,
        with audio prompts and melodies), else transformers' `generate`.

        Each clip draws from its own stream (`self.streams`)."""
        model = self.loaded.model
        streams = self.streams(seeds, self.loaded.num_codebooks, self.loaded.device)
        if self.config.token_loop == "fast":
            from musicsweep.engine.token_loop import TokenLoop

            if TokenLoop.supports(model):
                if self._fast_loop is None:
                    window_frames = int(round(WINDOW_S * self.loaded.frame_rate))
                    self._fast_loop = TokenLoop(model, self.loaded.device, window_frames)
                return self._fast_loop(inputs, windows, params, streams, codes, on_window, first, melody)
        sampling = stream_sampling(params, streams)
        return generate_codes(model, inputs, windows, sampling, codes, on_window, melody, first)

    def _finish(self, clip: np.ndarray, samples: int) -> np.ndarray:
        """Trim the last partial frame (or pad a rounding sample) to the exact length, then set the level.

        `clip` is (channels, samples); the result (samples,) for mono, (samples, channels) otherwise."""
        clip = clip[:, :samples]
        if clip.shape[-1] < samples:
            clip = np.pad(clip, ((0, 0), (0, samples - clip.shape[-1])))
        clip = clip[0] if clip.shape[0] == 1 else clip.T
        return normalize(clip, self.config, self.sampling_rate)


def load_engine(name: str, config: EngineConfig, source: str | None = None) -> MusicEngine:
    """Load `name` (from `source`, a cache-ahead folder, when given) on the configured device and dtype."""
    return MusicEngine(load_model(name, config, source), config)
