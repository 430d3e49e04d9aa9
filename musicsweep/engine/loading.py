"""Load a MusicGen model and processor once: the built-in tiny one or any `from_pretrained` name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicsweep.config import EngineConfig
from musicsweep.models import resolve_model_name


@dataclass
class LoadedModel:
    name: str
    model: Any
    processor: Any
    device: str
    dtype: Any

    @property
    def sampling_rate(self) -> int:
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.model.config.audio_encoder.frame_rate)


def pick_device(config: EngineConfig) -> str:
    import torch

    if config.device != "auto":
        return config.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(config: EngineConfig, device: str):
    """float16 on GPU, float32 on CPU, unless configured; the tiny model always uses float32."""
    import torch

    if config.dtype != "auto":
        return getattr(torch, config.dtype)
    if device.startswith("cuda"):
        return torch.float16
    return torch.float32


def load_model(name: str, config: EngineConfig) -> LoadedModel:
    """Build `tiny` offline, else call from_pretrained (hub id, alias or local folder)."""
    import torch

    device = pick_device(config)
    if name == "tiny":
        from musicsweep.engine.tiny import build_tiny_model

        model, processor = build_tiny_model()
        dtype = torch.float32
    else:
        from transformers import AutoProcessor, MusicgenForConditionalGeneration

        dtype = pick_dtype(config, device)
        resolved = resolve_model_name(name)
        processor = AutoProcessor.from_pretrained(resolved)
        model = MusicgenForConditionalGeneration.from_pretrained(resolved, dtype=dtype)
    model.to(device)
    model.eval()
    return LoadedModel(name, model, processor, device, dtype)
