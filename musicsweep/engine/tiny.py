"""The built-in tiny MusicGens: random weights at toy sizes, built offline from configs.

One per MusicGen kind, named like the hub's checkpoints (`musicsweep.models.TINY_MODELS`): `tiny`
(text), `tiny-melody` (text and chroma), `tiny-stereo` and `tiny-stereo-melody` (two channels as
interleaved codebooks). It exercises the real transformers generation path without a weight download, so the
whole pipeline (and its tests) runs on a laptop or a CI machine with no internet.
The weights are seeded, so every host builds the identical model. The same builder makes a
random model at musicgen-small's real shapes for realistic timings (`build_small_sized_model`).
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass
from pathlib import Path

from musicsweep.models import tiny_traits

SAMPLING_RATE = 32000
_BUILD_SEED = 1234


def _build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import T5TokenizerFast

    alphabet = list(string.ascii_lowercase + string.digits + " .,;:!?'-/()&")
    special = ["<pad>", "</s>", "<unk>"]
    vocab = [(token, 0.0) for token in special] + [(ch, -1.0) for ch in alphabet]
    vocab += [(f"▁{ch}", -1.5) for ch in alphabet if ch != " "]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    return T5TokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0
    )


@dataclass(frozen=True)
class ModelSize:
    """The sizes that tell the tiny model from musicgen-small; everything else is shared."""

    text_vocab: int
    text_width: int
    text_head_width: int
    text_ffn: int
    text_layers: int
    text_heads: int
    codebook_dim: int
    codec_width: int
    codec_filters: int
    codec_lstm_layers: int
    width: int
    layers: int
    heads: int
    ffn: int
    max_positions: int

    def configs(self, channels: int = 1) -> tuple[dict, dict, dict]:
        """Text encoder, audio codec and decoder config dicts, as MusicgenConfig takes them.

        Stereo (`channels` 2) keeps the mono codec and doubles the codebooks: each channel's codes
        interleaved, as in facebook/musicgen-stereo-*."""
        text_encoder = {
            "model_type": "t5",
            "vocab_size": self.text_vocab,
            "d_model": self.text_width,
            "d_kv": self.text_head_width,
            "d_ff": self.text_ffn,
            "num_layers": self.text_layers,
            "num_heads": self.text_heads,
        }
        audio_encoder = {
            "model_type": "encodec",
            "sampling_rate": SAMPLING_RATE,
            "audio_channels": 1,
            "upsampling_ratios": [8, 5, 4, 4],  # a 640-sample hop: 50 frames per second
            "codebook_size": 2048,
            "codebook_dim": self.codebook_dim,
            "target_bandwidths": [2.2],  # 4 codebooks
            "hidden_size": self.codec_width,
            "num_filters": self.codec_filters,
            "num_residual_layers": 1,
            "num_lstm_layers": self.codec_lstm_layers,
            "chunk_length_s": None,
            "overlap": None,
        }
        decoder = {
            "model_type": "musicgen_decoder",
            "vocab_size": 2048,
            "num_codebooks": 4 * channels,
            "audio_channels": channels,
            "hidden_size": self.width,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "ffn_dim": self.ffn,
            "max_position_embeddings": self.max_positions,
            "pad_token_id": 2048,
            "bos_token_id": 2048,
            "decoder_start_token_id": 2048,
        }
        return text_encoder, audio_encoder, decoder


TINY = ModelSize(
    text_vocab=128,
    text_width=32,
    text_head_width=16,
    text_ffn=64,
    text_layers=2,
    text_heads=2,
    codebook_dim=16,
    codec_width=16,
    codec_filters=4,
    codec_lstm_layers=1,
    width=32,
    layers=2,
    heads=2,
    ffn=64,
    max_positions=4096,
)
MUSICGEN_SMALL = ModelSize(
    text_vocab=32128,
    text_width=768,
    text_head_width=64,
    text_ffn=3072,
    text_layers=12,
    text_heads=12,
    codebook_dim=128,
    codec_width=128,
    codec_filters=64,
    codec_lstm_layers=2,
    width=1024,
    layers=24,
    heads=16,
    ffn=4096,
    max_positions=2048,
)


MUSICGEN_MEDIUM = dataclasses.replace(MUSICGEN_SMALL, width=1536, layers=48, heads=24, ffn=6144)


def build_tiny_model(melody: bool = False, stereo: bool = False):
    """Return (model, tokenizer) for a tiny MusicGen of the given kind; deterministic across processes."""
    return build_random_model(*TINY.configs(channels=2 if stereo else 1), melody=melody)


def build_named_tiny_model(name: str):
    """(model, tokenizer) for one of `musicsweep.models.TINY_MODELS`."""
    traits = tiny_traits(name)
    return build_tiny_model(melody=traits.melody, stereo=traits.channels == 2)


def build_small_sized_model(dtype=None, size: ModelSize = MUSICGEN_SMALL, device=None):
    """(model, tokenizer) with random weights at facebook/musicgen-small's real shapes (587M parameters).

    For realistic timings without a weight download (benchmarks/engine.py --real-size). The audio is
    noise; the tokenizer is the tiny character-level one, which fits T5's larger vocabulary. Another
    `size` (MUSICGEN_MEDIUM) and a `device` to initialise on (a GPU does it in seconds) are for
    benchmarks/gpu.sh; weights initialised on a GPU differ from the CPU-built ones.
    """
    model, tokenizer = build_random_model(*size.configs(), device=device)
    return (model if dtype is None else model.to(dtype=dtype)), tokenizer


def build_random_model(text_encoder: dict, audio_encoder: dict, decoder: dict, melody: bool = False, device=None):
    """Assemble a MusicGen with seeded random weights from three config dicts, set up like the real checkpoints.

    `melody` builds MusicGen-Melody's architecture instead (text and chroma prepended to the
    transformer's inputs rather than cross-attended).
    """
    import torch
    from transformers import (
        MusicgenConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyForConditionalGeneration,
    )

    from musicsweep.engine.quiet import silence_token_id_warnings

    if melody:
        decoder = decoder | {"model_type": "musicgen_melody_decoder"}
        config_class, model_class = MusicgenMelodyConfig, MusicgenMelodyForConditionalGeneration
    else:
        config_class, model_class = MusicgenConfig, MusicgenForConditionalGeneration
    silence_token_id_warnings()
    config = config_class(text_encoder=text_encoder, audio_encoder=audio_encoder, decoder=decoder)
    config.decoder_start_token_id = 2048
    config.pad_token_id = 2048
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(_BUILD_SEED)
    try:
        with torch.device(device or "cpu"):
            model = model_class(config)
        with torch.no_grad():
            for name, buffer in model.audio_encoder.named_buffers():
                if name.endswith(".embed"):
                    buffer.copy_(torch.randn_like(buffer) * 4.0)
                    avg = model.audio_encoder.get_buffer(name[: -len("embed")] + "embed_avg")
                    avg.copy_(buffer)
            # Biases dominate a random codec this small; without them the codes shape the audio.
            for name, parameter in model.audio_encoder.decoder.named_parameters():
                if name.endswith("bias"):
                    parameter.zero_()
    finally:
        torch.random.set_rng_state(rng_state)
    model.eval()
    generation = model.generation_config
    generation.decoder_start_token_id = 2048
    generation.pad_token_id = 2048
    generation.bos_token_id = 2048
    generation.do_sample = True
    generation.guidance_scale = 3.0
    generation.max_length = 1500
    return model, _build_tokenizer()


def save_tiny_model(folder: Path) -> Path:
    """Write the tiny model with save_pretrained, so from_pretrained can load it like a hub model."""
    model, tokenizer = build_tiny_model()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
