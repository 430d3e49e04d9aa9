"""A batch's input audio as the model takes it: melody chroma per window, audio prompts as codes.

Inputs arrive as 32 kHz float arrays (channels, samples) (`sweep.inputs` converted them). Channels
are matched to the model explicitly: a mono model hears the mean of a stereo input; a stereo model
hears a mono input on both channels.

- An audio prompt is encoded by the model's own codec, trimmed to whole frames (at most one
  640-sample hop of its end is dropped), each channel separately with a stereo model, its codes
  interleaved as MusicGen-stereo generates them. Its codes are the first window's context, as an
  earlier window's codes are for a continuation window (`longform.plan_windows`).
- A melody conditions each window on the chroma of its own span of the clip, as audiocraft's
  extended generation does, looped when the melody is shorter than the clip. The chroma follows
  transformers' `MusicgenMelodyFeatureExtractor` (a 16384-point normalised power spectrogram every
  4096 samples, librosa's chroma filters, the strongest pitch class one-hot per frame), computed
  with `torch.stft` so that no torchaudio is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CHROMA_FFT, CHROMA_HOP, CHROMA_BINS = 16384, 4096, 12


@dataclass
class ClipInputs:
    """One batch's inputs, one entry per clip; audio is (channels, samples) float32 at 32 kHz."""

    melodies: list[np.ndarray] | None = None
    audio_prompts: list[np.ndarray] | None = None  # all of one length (`Job.group_key`)
    prompt_in_output: bool = False

    @property
    def prompt_samples(self) -> int:
        return self.audio_prompts[0].shape[-1] if self.audio_prompts else 0


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """(c, samples) -> (channels, samples): mean to mono, or mono repeated."""
    if audio.shape[0] == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    return np.repeat(audio[:1], channels, axis=0)


def channels_of(model: Any) -> int:
    return int(model.decoder.config.audio_channels)


def encode_prompts(model: Any, prompts: list[np.ndarray], device: Any) -> Any:
    """The prompts' undelayed codes (batch, codebooks, frames), whole frames only."""
    import torch

    channels = channels_of(model)
    hop = int(np.prod(model.config.audio_encoder.upsampling_ratios))
    frames = prompts[0].shape[-1] // hop
    audio = np.stack([to_channels(p, channels)[:, : frames * hop] for p in prompts])
    values = torch.from_numpy(audio).to(device=device, dtype=model.audio_encoder.dtype)
    with torch.no_grad():
        per_channel = [model.audio_encoder.encode(values[:, c : c + 1]).audio_codes[0] for c in range(channels)]
    # (batch, channel codebooks, frames) per channel -> interleaved (batch, codebooks, frames)
    return torch.stack(per_channel, dim=2).flatten(1, 2)


def chroma(audio: np.ndarray, sampling_rate: int) -> Any:
    """(samples,) mono -> (frames, 12) one-hot chroma, as `MusicgenMelodyFeatureExtractor` computes it."""
    import torch
    from transformers.audio_utils import chroma_filter_bank

    wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if wave.shape[-1] < CHROMA_FFT:
        pad = CHROMA_FFT - wave.shape[-1]
        wave = torch.nn.functional.pad(wave, (pad // 2, pad - pad // 2))
    window = torch.hann_window(CHROMA_FFT)
    spectrum = torch.stft(wave, CHROMA_FFT, CHROMA_HOP, window=window, center=True, return_complex=True)
    power = (spectrum.abs() / window.pow(2).sum().sqrt()) ** 2  # torchaudio's normalized=True, power 2
    filters = torch.from_numpy(
        chroma_filter_bank(sampling_rate=sampling_rate, num_frequency_bins=CHROMA_FFT, tuning=0, num_chroma=CHROMA_BINS)
    ).float()
    raw = filters @ power  # (12, frames)
    strongest = raw.argmax(dim=0)
    return torch.nn.functional.one_hot(strongest, CHROMA_BINS).float()


def melody_span(melody: np.ndarray, start: int, end: int) -> np.ndarray:
    """Samples start..end of a mono melody, looped when it is shorter."""
    index = np.arange(start, end) % melody.shape[-1]
    return melody[index]


class MelodyConditioning:
    """Each window's `input_features` for transformers' MusicGen-Melody `generate`."""

    def __init__(self, melodies: list[np.ndarray], sampling_rate: int, frame_rate: int, device: Any) -> None:
        self.melodies = [to_channels(m, 1)[0] for m in melodies]
        self.hop = sampling_rate // frame_rate
        self.sampling_rate, self.device = sampling_rate, device

    def features(self, start_frame: int, end_frame: int) -> Any:
        """(batch, chroma frames, 12) for the window over code frames start..end."""
        import torch

        start, end = start_frame * self.hop, end_frame * self.hop
        spans = [chroma(melody_span(m, start, end), self.sampling_rate) for m in self.melodies]
        return torch.stack(spans).to(self.device)

    def __call__(self, start_frame: int, end_frame: int) -> dict[str, Any]:
        return {"input_features": self.features(start_frame, end_frame)}
