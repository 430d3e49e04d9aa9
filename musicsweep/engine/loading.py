"""Load a MusicGen model and its tokenizer once: the built-in tiny one or any `from_pretrained` source.

Device and dtype are picked here: cuda if present, else cpu; float16 on GPU; bfloat16 on a CPU
with native bf16 (3.5x over float32 at musicgen-small's size, see benchmarks/RESULTS.md); float32
otherwise and always for the tiny model, whose speed is bound by Python overhead, not arithmetic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicsweep.config import EngineConfig
from musicsweep.engine.quiet import silence_token_id_warnings
from musicsweep.models import TINY_MODELS, resolve_model_name


@dataclass
class LoadedModel:
    name: str
    model: Any
    tokenizer: Any  # no processor: melody chroma is computed in engine/inputs.py, without torchaudio
    device: str
    dtype: Any
    threads: int | None = None  # CPU threads for this model's generation; None keeps torch's default

    @property
    def sampling_rate(self) -> int:
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.model.config.audio_encoder.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.decoder.num_codebooks)


def pick_device(config: EngineConfig) -> str:
    import torch

    if config.device != "auto":
        return config.device
    return "cuda" if torch.cuda.is_available() else "cpu"


CPU_BF16_FLAGS = (" avx512_bf16", " amx_bf16")  # in /proc/cpuinfo; `musicsweep doctor` probes them too


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX); emulated bf16 is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def pick_dtype(config: EngineConfig, device: str, tiny: bool = False):
    """The configured dtype, else fp16 on GPU (bf16 where supported), bf16 on a bf16 CPU, else fp32."""
    import torch

    if config.dtype != "auto":
        return getattr(torch, config.dtype)
    if tiny:
        return torch.float32
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def load_model(name: str, config: EngineConfig, source: str | None = None) -> LoadedModel:
    """Build `tiny` offline, else from_pretrained from `source` (a cache-ahead snapshot folder) or the name."""

    silence_token_id_warnings()
    device = pick_device(config)
    if name in TINY_MODELS:
        from musicsweep.engine.tiny import build_named_tiny_model

        model, tokenizer = build_named_tiny_model(name)
        # Its ops are far too small to split across threads; on a busy host, OpenMP threads
        # spinning for each other made generation 25x slower than one thread (19:34, load 17).
        threads = 1
        dtype = pick_dtype(config, device, tiny=True)
        model.to(dtype=dtype)
    else:
        from transformers import AutoModelForTextToWaveform, AutoTokenizer

        threads = None
        dtype = pick_dtype(config, device)
        resolved = source or resolve_model_name(name)
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        # the config's model type picks the class: musicgen, or musicgen_melody for -melody (text-only here)
        model = AutoModelForTextToWaveform.from_pretrained(resolved, dtype=dtype)
    model.to(device)
    model.eval()
    return LoadedModel(name, model, tokenizer, device, dtype, threads)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with `count` CPU threads, then restore: one model's setting must not leak to the next."""
    import torch

    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
