"""Generate clips of exactly the requested length from a loaded MusicGen."""

from __future__ import annotations

import hashlib

import numpy as np

from musicsweep.config import EngineConfig
from musicsweep.engine.loading import LoadedModel, load_model
from musicsweep.job import GenerationParams


def batch_seed(seeds: list[int]) -> int:
    """One RNG seed for a batch, from its clips' seeds in order: same composition, same audio."""
    digest = hashlib.sha256(",".join(str(int(s)) for s in seeds).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class MusicEngine:
    """A model loaded once per process, generating batches of same-length clips."""

    def __init__(self, loaded: LoadedModel, config: EngineConfig) -> None:
        self.loaded = loaded
        self.config = config

    @property
    def sampling_rate(self) -> int:
        return self.loaded.sampling_rate

    def generate(
        self, prompts: list[str], seeds: list[int], duration_s: float, params: GenerationParams
    ) -> list[np.ndarray]:
        """Return one float32 mono array per prompt, exactly `duration_s` long."""
        import torch

        model, processor = self.loaded.model, self.loaded.processor
        frames = int(np.ceil(duration_s * self.loaded.frame_rate))
        inputs = processor(text=prompts, padding=True, return_tensors="pt").to(self.loaded.device)
        generator_seed = batch_seed(seeds)
        torch.manual_seed(generator_seed)
        with torch.no_grad():
            audio = model.generate(
                **inputs,
                do_sample=True,
                guidance_scale=params.guidance_scale,
                top_k=params.top_k,
                top_p=params.top_p,
                temperature=params.temperature,
                max_new_tokens=frames + model.decoder.num_codebooks - 1,
            )
        samples = int(round(duration_s * self.sampling_rate))
        return [self._finish(clip[0].float().cpu().numpy(), samples) for clip in audio]

    def _finish(self, clip: np.ndarray, samples: int) -> np.ndarray:
        clip = clip[:samples]
        if clip.shape[0] < samples:
            clip = np.pad(clip, (0, samples - clip.shape[0]))
        return normalize(clip, self.config)


def normalize(clip: np.ndarray, config: EngineConfig) -> np.ndarray:
    """Peak-normalise to `peak_dbfs` (default -1 dBFS) so nothing clips; `none` only clamps."""
    clip = np.nan_to_num(clip.astype(np.float32))
    if config.normalize == "none":
        return np.clip(clip, -1.0, 1.0)
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    if peak == 0.0:
        return clip
    target = 10 ** (config.peak_dbfs / 20)
    return clip * (target / peak)


def load_engine(name: str, config: EngineConfig) -> MusicEngine:
    return MusicEngine(load_model(name, config), config)
