"""Generate batches of clips of exactly the requested length from a loaded MusicGen.

Reproducibility: a batch draws all its samples from one RNG stream, seeded from its clips' seeds
in order (`batch_seed`). Re-running the same jobs in the same batch composition (same clips, same
order, same batch size, same device and dtype) gives the same WAVs bit for bit; both token loops
(`engine.token_loop`) draw the same codes from the same logits, so in float32 on CPU they give the
same WAVs too (tests/test_token_loop.py), while other dtypes and devices may round them apart. When the
composition changes (other batch mates, another order, a smaller batch after out-of-memory
back-off, a re-run of only the failed clips) each clip is still a valid sample for its prompt,
but a different one: its seed no longer reproduces the earlier audio. The same holds for a batch
resumed from window checkpoints (`engine.checkpoint`): with the checkpoint's RNG state it continues
the stream bit for bit; without it (clips checkpointed in other batches) it continues their codes
from a stream seeded from its seeds and the window it resumes after, so that too is reproducible.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from musicsweep.config import EngineConfig
from musicsweep.engine.batching import auto_batch_size, check_injected_failure
from musicsweep.engine.checkpoint import WindowCallback, WindowCheckpoint, capture_rng, restore_rng
from musicsweep.engine.codec import SpanCodec
from musicsweep.engine.inputs import ClipInputs, MelodyConditioning, encode_prompts
from musicsweep.engine.loading import LoadedModel, load_model, torch_threads
from musicsweep.engine.longform import WINDOW_S, Window, generate_codes, plan_windows
from musicsweep.engine.normalize import normalize
from musicsweep.engine.sampling import sampling_kwargs
from musicsweep.job import GenerationParams


def batch_seed(seeds: list[int], windows_done: int = 0) -> int:
    """One RNG seed for a batch, from its clips' seeds in order (and the window it resumes after):
    same composition, same audio."""
    text = ",".join(str(int(s)) for s in seeds) + (f"@{windows_done}" if windows_done else "")
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class MusicEngine:
    """A model loaded once per process, generating batches of same-length clips."""

    def __init__(self, loaded: LoadedModel, config: EngineConfig) -> None:
        self.loaded = loaded
        self.config = config
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
        `inputs` drops it. `resume` (a checkpoint of these clips) skips the windows it holds,
        continuing its RNG state if it has one; `on_window` gets a checkpoint after each window and
        may raise `StopAtWindow` to end there. `inputs` holds melodies and audio prompts
        (`engine.inputs`).
        """
        import torch

        check_injected_failure(len(prompts))
        inputs = inputs or ClipInputs()
        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        device = self.loaded.device
        total_frames = int(np.ceil(duration_s * self.loaded.frame_rate))
        codes = encode_prompts(model, inputs.audio_prompts, device) if inputs.audio_prompts else None
        prompt_frames = 0 if codes is None else codes.shape[-1]
        stride_s = params.extend_stride_s
        windows = plan_windows(total_frames, self.loaded.frame_rate, stride_s, prompt_frames=prompt_frames)
        text = tokenizer(text=prompts, padding=True, return_tensors="pt").to(device)
        done = 0
        if resume is not None and self.fits(resume, len(prompts), windows):
            codes, done = resume.codes.to(device), resume.windows_done
            if resume.rng_state is None:
                torch.manual_seed(batch_seed(seeds, done))
            else:
                restore_rng(resume.rng_state, device)
        else:
            torch.manual_seed(batch_seed(seeds))
        spans = SpanCodec(model, total_frames, background=device == "cpu")
        counter = iter(range(done + 1, len(windows) + 1))

        def after_window(so_far: Any) -> None:
            spans.feed(so_far)
            if on_window is not None:
                checkpoint = WindowCheckpoint(next(counter), len(windows), so_far.cpu().clone(), capture_rng(device))
                on_window(checkpoint)

        melody = None
        if inputs.melodies:
            melody = MelodyConditioning(inputs.melodies, self.sampling_rate, self.loaded.frame_rate, device)
        with torch_threads(self.loaded.threads):
            try:
                if codes is not None:
                    spans.feed(codes)  # the prompt's or checkpoint's windows decode while the rest generate
                codes = self.generate_codes(dict(text), windows[done:], params, codes, after_window, melody)
                audio = spans.finish(codes)
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
        codes: Any = None,
        on_window: Callable[[Any], None] | None = None,
        melody: MelodyConditioning | None = None,
    ) -> Any:
        """The undelayed codes of every window, by `engine.token_loop`: fast where `TokenLoop.supports`
        the model (MusicGen and MusicGen-stereo, audio prompts included), else transformers' `generate`
        (MusicGen-Melody, with or without a melody)."""
        model = self.loaded.model
        if self.config.token_loop == "fast":
            from musicsweep.engine.token_loop import TokenLoop

            if TokenLoop.supports(model):
                if self._fast_loop is None:
                    window_frames = int(round(WINDOW_S * self.loaded.frame_rate))
                    self._fast_loop = TokenLoop(model, self.loaded.device, window_frames)
                return self._fast_loop(inputs, windows, params, codes, on_window)
        sampling = functools.partial(sampling_kwargs, params)
        return generate_codes(model, inputs, windows, sampling, codes, on_window, melody)

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
