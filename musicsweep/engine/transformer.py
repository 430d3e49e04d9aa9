"""MusicGen's transformer (transformers' `model.decoder`) as plain tensor ops over a preallocated KV cache.

transformers' own step rebuilds masks, walks its cache classes and re-concatenates every
layer's keys and values with `torch.cat` on each step (`DynamicLayer.update`). This module runs
the loaded model's own weights (only the small code heads are copied, into one matrix) with:

- self-attention keys and values written in place into a `KVCache` sized for the whole window;
- cross-attention keys and values projected once per batch from the text (`TextKV`);
- the code heads as one matmul per step;
- the conditional and unconditional (guidance) rows in one batch: the rows carry the same codes,
  so the codes are embedded once and the embeddings repeated;
- MusicGen-Melody, whose layers have no cross-attention: its conditioning (the melody's chroma,
  then the text) is the transformer's first positions (`TextKV.prefix`, `CachedTransformer.prefix`),
  run once per window with the window's own chroma; the codes follow at positions after it.

`forward` serves the eager loop (attend to `cache[:end]`, no mask) and, with `bucket`, the static
shapes a CUDA graph needs (attend to a fixed `cache[:bucket]`, positions past `position` masked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class KVCache:
    """Self-attention keys and values per layer, each (rows, heads, capacity, head_dim)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]


@dataclass
class TextKV:
    """The conditioning: cross-attention keys and values per layer (rows, heads, text_len, head_dim) and
    their additive mask, or for MusicGen-Melody (no keys) the `prefix` of hidden states its codes follow."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor  # (rows, 1, 1, text_len): 0 where a text token counts, the dtype's minimum elsewhere
    prefix: torch.Tensor | None = None  # (rows, prefix_len, width), positions added

    @property
    def offset(self) -> int:
        """The position of the first code: after the prefix."""
        return 0 if self.prefix is None else self.prefix.shape[1]


class CachedTransformer:
    """The transformer of a `MusicgenForConditionalGeneration`, stepped over a static cache (see module docstring)."""

    def __init__(self, model: Any) -> None:
        causal_lm = model.decoder
        decoder = causal_lm.model.decoder
        self.model = model
        self.layers = list(decoder.layers)
        self.num_codebooks = int(causal_lm.num_codebooks)
        self.heads = int(self.layers[0].self_attn.num_heads)
        self.head_dim = int(self.layers[0].self_attn.head_dim)
        self.embeddings = [table.weight for table in decoder.embed_tokens]
        self.positions = decoder.embed_positions.weights
        self.final_norm = decoder.layer_norm
        # the code heads as one (codebooks * vocab, width) matrix: one matmul per step instead of
        # one per codebook plus a stack (a small copy: 16 MB for musicgen-small in bfloat16)
        self.lm_heads = torch.cat([head.weight for head in causal_lm.lm_heads])
        self.width = int(decoder.config.hidden_size)
        # the delay pattern: codebook k waits k steps; a stereo model's left and right alternate
        channels = int(causal_lm.config.audio_channels)
        self.delays = torch.arange(self.num_codebooks, device=self.device) // channels
        self.prepends = not hasattr(self.layers[0], "encoder_attn")  # MusicGen-Melody

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings[0].dtype

    @property
    def device(self) -> torch.device:
        return self.embeddings[0].device

    def new_cache(self, rows: int, capacity: int) -> KVCache:
        shape = (rows, self.heads, capacity, self.head_dim)
        layers = range(len(self.layers))
        empty = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in layers]
        return KVCache(keys=empty, values=[torch.zeros_like(k) for k in empty])

    def text_kv(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor, guided: bool) -> TextKV:
        """Project the text encoder's output once per batch, as `MusicgenForConditionalGeneration` prepares it.

        `encoder_hidden` (batch, text_len, text_width) and `attention_mask` (batch, text_len) are the
        conditional rows; guidance appends unconditional rows whose text is all zeros and fully
        masked, so their cross-attention adds exactly zero, as in transformers.
        """
        if hasattr(self.model, "enc_to_dec_proj"):
            encoder_hidden = self.model.enc_to_dec_proj(encoder_hidden)
        encoder_hidden = encoder_hidden * attention_mask[..., None].to(encoder_hidden.dtype)
        if guided:
            encoder_hidden = torch.cat([encoder_hidden, torch.zeros_like(encoder_hidden)])
            attention_mask = torch.cat([attention_mask, torch.zeros_like(attention_mask)])
        rows, text_len = attention_mask.shape
        keys, values = [], []
        for layer in self.layers:
            attention = layer.encoder_attn
            keys.append(self._split_heads(F.linear(encoder_hidden, attention.k_proj.weight, attention.k_proj.bias)))
            values.append(self._split_heads(F.linear(encoder_hidden, attention.v_proj.weight, attention.v_proj.bias)))
        floor = torch.finfo(self.dtype).min
        mask = torch.zeros((rows, 1, 1, text_len), dtype=self.dtype, device=self.device)
        mask.masked_fill_(attention_mask[:, None, None, :] == 0, floor)
        return TextKV(keys, values, mask)

    def prefix(
        self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor, chroma: torch.Tensor | None, guided: bool
    ) -> TextKV:
        """MusicGen-Melody's conditioning as `MusicgenMelodyForConditionalGeneration.generate` prepares it.

        The chroma (batch, frames, 12), or without a melody one frame of pitch class 0 (its "null"
        chroma, also that of the unconditional rows), is projected and looped or cut to
        `chroma_length` frames, then the text (projected, padding zeroed) follows. Every position is
        attended to, the text's padding too, as transformers does.
        """
        model, config = self.model, self.model.config
        if hasattr(model, "enc_to_dec_proj"):
            encoder_hidden = model.enc_to_dec_proj(encoder_hidden)
        batch = attention_mask.shape[0]
        null = torch.zeros((batch, 1 if chroma is None else chroma.shape[1], config.num_chroma), device=self.device)
        null[:, :, 0] = 1
        audio = null if chroma is None else chroma.to(self.device)
        if guided:
            encoder_hidden = torch.cat([encoder_hidden, torch.zeros_like(encoder_hidden)])
            attention_mask = torch.cat([attention_mask, torch.zeros_like(attention_mask)])
            audio = torch.cat([audio, null])
        encoder_hidden = encoder_hidden * attention_mask[..., None].to(encoder_hidden.dtype)
        audio = audio.to(self.dtype)
        if hasattr(model, "audio_enc_to_dec_proj"):
            audio = model.audio_enc_to_dec_proj(audio)
        if audio.shape[1] < config.chroma_length:
            audio = audio.repeat(1, -(-config.chroma_length // audio.shape[1]), 1)
        prefix = torch.cat([audio[:, : config.chroma_length], encoder_hidden.to(self.dtype)], dim=1)
        empty = torch.zeros((prefix.shape[0], 1, 1, 0), dtype=self.dtype, device=self.device)
        return TextKV([], [], empty, prefix + self.positions[: prefix.shape[1]])

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        rows, length, _ = states.shape
        return states.view(rows, length, self.heads, self.head_dim).transpose(1, 2)

    def embed(self, codes: torch.Tensor, start: int | torch.Tensor, repeat: int) -> torch.Tensor:
        """(batch, codebooks, T) codes at positions start.. -> (repeat * batch, T, width) transformer inputs."""
        hidden = F.embedding(codes[:, 0], self.embeddings[0])
        for codebook in range(1, self.num_codebooks):
            hidden = hidden + F.embedding(codes[:, codebook], self.embeddings[codebook])
        length = codes.shape[-1]
        if isinstance(start, torch.Tensor):
            positions = self.positions.index_select(0, start)
        else:
            positions = self.positions[start : start + length]
        hidden = hidden + positions
        return hidden.repeat(repeat, 1, 1) if repeat > 1 else hidden

    def forward(
        self,
        hidden: torch.Tensor,
        start: int | torch.Tensor,
        cache: KVCache,
        text: TextKV,
        bucket: int | None = None,
    ) -> torch.Tensor:
        """Run the layers on `hidden` (rows, T, width) from position `start`; the last position's logits.

        Returns (rows, codebooks, vocab).

        Eager (`bucket` None, `start` an int): write the cache at start..start+T and attend to
        `cache[:start+T]`, causally when T > 1 (a prefill, which starts at 0). Static (`bucket` an
        int, `start` a one-element position tensor, T = 1): write at `start` and attend to
        `cache[:bucket]` with later positions masked, so that shapes never change between steps.
        """
        length = hidden.shape[1]
        if bucket is None:
            end = start + length
            mask = None
        else:
            end = bucket
            visible = (torch.arange(bucket, device=hidden.device) <= start).view(1, 1, 1, bucket)
            mask = torch.zeros(visible.shape, dtype=hidden.dtype, device=hidden.device)
            mask.masked_fill_(~visible, float("-inf"))
        for index, layer in enumerate(self.layers):
            keys, values = cache.keys[index], cache.values[index]
            attention = layer.self_attn
            normed = layer.self_attn_layer_norm(hidden)
            query = self._split_heads(F.linear(normed, attention.q_proj.weight, attention.q_proj.bias))
            key = self._split_heads(F.linear(normed, attention.k_proj.weight, attention.k_proj.bias))
            value = self._split_heads(F.linear(normed, attention.v_proj.weight, attention.v_proj.bias))
            if bucket is None:
                keys[:, :, start:end] = key
                values[:, :, start:end] = value
            else:
                keys.index_copy_(2, start, key)
                values.index_copy_(2, start, value)
            attended = F.scaled_dot_product_attention(
                query, keys[:, :, :end], values[:, :, :end], attn_mask=mask, is_causal=mask is None and length > 1
            )
            hidden = hidden + self._merge(attended, attention.out_proj)
            if text.keys:
                cross = layer.encoder_attn
                normed = layer.encoder_attn_layer_norm(hidden)
                query = self._split_heads(F.linear(normed, cross.q_proj.weight, cross.q_proj.bias))
                keys, values = text.keys[index], text.values[index]
                attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=text.mask)
                hidden = hidden + self._merge(attended, cross.out_proj)
            normed = layer.final_layer_norm(hidden)
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(normed)))
        last = self.final_norm(hidden[:, -1])
        return F.linear(last, self.lm_heads).view(last.shape[0], self.num_codebooks, -1)

    def _merge(self, attended: torch.Tensor, projection: Any) -> torch.Tensor:
        rows, _, length, _ = attended.shape
        merged = attended.transpose(1, 2).reshape(rows, length, self.width)
        return F.linear(merged, projection.weight, projection.bias)
