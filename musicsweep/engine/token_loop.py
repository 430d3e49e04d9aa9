"""musicsweep's own token loop (`engine.token_loop: fast`): MusicGen's codes, window by window.

It produces the codes `MusicgenForConditionalGeneration.generate` would, given the same logits and
the same `CodeSampler` draws (tests/test_token_loop.py checks token equality on CPU), without its
per-step overhead:

- the text is encoded once per batch and its cross-attention keys and values projected once
  (`CachedTransformer.text_kv`), shared by every window of a long clip;
- the self-attention keys and values go into one preallocated `KVCache`;
- the delay pattern is index arithmetic on a (batch, codebooks, length) buffer: codebook k's frame
  t sits at position t + 1 + delay(k), and a sampled code is kept only where its frame is one the
  window generates; every other position holds the pad code or the window's context, an earlier
  window's codes or an audio prompt's (`DelayedWindow`). delay(k) is k, or k // 2 for a stereo
  model, whose left and right codebooks alternate and share their delay;
- the sampler is `CodeSampler`, fed the same (batch * codebooks) rows in the same order as under
  transformers and the same draws from each clip's own stream (`streams.ClipStreams`), so the same
  seeds draw the same codes with either token loop.

On CUDA each step replays a CUDA graph (`steps.GraphedSteps`); elsewhere it runs eagerly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from musicsweep.engine.inputs import MelodyConditioning
from musicsweep.engine.longform import Window
from musicsweep.engine.sampling import CodeSampler, is_guided
from musicsweep.engine.steps import EagerSteps, GraphedSteps, StepsCache, eager_steps
from musicsweep.engine.streams import ClipStreams
from musicsweep.engine.transformer import CachedTransformer, TextKV
from musicsweep.job import GenerationParams


@dataclass
class DelayedWindow:
    """One window's codes in MusicGen's delayed layout: `context` frames given, `new` to generate."""

    codes: torch.Tensor  # (batch, codebooks, context + new + max delay + 1)
    free: torch.Tensor  # (codebooks, same length) bool: where a sampled code is kept
    delays: torch.Tensor  # (codebooks,) each codebook's delay
    context: int
    new: int

    @classmethod
    def start(
        cls, prompt: torch.Tensor | None, batch: int, delays: torch.Tensor, window: Window, pad: int
    ) -> DelayedWindow:
        """Lay out `prompt` (batch, codebooks, context_frames) undelayed codes; the rest is the pad code."""
        context, new = window.context_frames, window.new_frames
        codebooks, device = delays.shape[0], delays.device
        length = context + new + int(delays.max()) + 1
        codes = torch.full((batch, codebooks, length), pad, dtype=torch.long, device=device)
        for codebook in range(codebooks if prompt is not None else 0):
            first = 1 + int(delays[codebook])
            codes[:, codebook, first : first + context] = prompt[:, codebook]
        frame = torch.arange(length, device=device)[None, :] - 1 - delays[:, None]
        return cls(codes, (frame >= context) & (frame < context + new), delays, context, new)

    @property
    def length(self) -> int:
        return self.codes.shape[-1]

    def put(self, position: int, sampled: torch.Tensor) -> torch.Tensor:
        """Keep `sampled` (batch, codebooks) where `position` is free; return the codes now at `position`."""
        column = torch.where(self.free[:, position], sampled, self.codes[:, :, position])
        self.codes[:, :, position] = column
        return column

    def new_frames(self) -> torch.Tensor:
        """The generated frames, undelayed: (batch, codebooks, new)."""
        batch = self.codes.shape[0]
        first = self.context + 1 + self.delays
        index = first[:, None] + torch.arange(self.new, device=self.codes.device)[None, :]
        return self.codes.gather(2, index.expand(batch, -1, -1))


class Conditioning:
    """The text encoded once per batch, and each window's `TextKV`: the same cross-attention keys and
    values for every window, or for MusicGen-Melody a prefix with the chroma of the window's own span."""

    def __init__(
        self, transformer: CachedTransformer, inputs: dict[str, Any], guided: bool, melody: MelodyConditioning | None
    ) -> None:
        self.mask = inputs["attention_mask"]
        encoder = transformer.model.text_encoder
        self.hidden = encoder(input_ids=inputs["input_ids"], attention_mask=self.mask).last_hidden_state
        self.transformer, self.guided, self.melody = transformer, guided, melody
        self.fixed = None
        if not transformer.prepends:
            self.fixed = transformer.text_kv(self.hidden, self.mask, guided)
        elif melody is None:
            self.fixed = transformer.prefix(self.hidden, self.mask, None, guided)

    def __call__(self, start_frame: int, end_frame: int) -> TextKV:
        """The conditioning of the window over code frames start..end of the clip."""
        if self.fixed is not None:
            return self.fixed
        chroma = self.melody.features(start_frame, end_frame)
        return self.transformer.prefix(self.hidden, self.mask, chroma, self.guided)


def sample_codes(sampler: CodeSampler, logits: torch.Tensor, guided: bool, uniform: torch.Tensor) -> torch.Tensor:
    """(rows, codebooks, vocab) logits -> (batch, codebooks) codes, rows ordered as transformers orders them."""
    logits = logits.float()
    if guided:
        conditional, unconditional = logits.chunk(2)
        scores = sampler.guide(conditional.flatten(0, 1), unconditional.flatten(0, 1))
        batch = conditional.shape[0]
    else:
        scores, batch = logits.flatten(0, 1), logits.shape[0]
    return sampler.sample(scores, uniform).view(batch, -1)


def run_window(
    steps: EagerSteps, delayed: DelayedWindow, sampler: CodeSampler, guided: bool, draws: torch.Tensor
) -> None:
    """Fill `delayed`'s free positions: prefill its first context + 1 positions, then one step per
    position, the i-th sampled with `draws[i]`."""
    logits = steps.prefill(delayed.codes[:, :, : delayed.context + 1])
    for step, position in enumerate(range(delayed.context + 1, delayed.length)):
        column = delayed.put(position, sample_codes(sampler, logits, guided, draws[step]))
        if position + 1 < delayed.length:
            logits = steps.step(column, position)


def run_token_loop(
    transformer: CachedTransformer,
    inputs: dict[str, Any],
    windows: list[Window],
    sampler: CodeSampler,
    streams: ClipStreams,
    make_steps: Callable[..., EagerSteps] = eager_steps,
    codes: torch.Tensor | None = None,
    on_window: Callable[[torch.Tensor], None] | None = None,
    first: int = 0,
    melody: MelodyConditioning | None = None,
) -> torch.Tensor:
    """Run the windows; returns the undelayed codes (batch, codebooks, total_frames), as `longform.generate_codes`.

    `make_steps(transformer, rows, capacity, text, repeat)` gives the step runner (see `steps`); window
    `first + i` draws from `streams.window(first + i, ...)`; `codes`, `on_window` and `first` are as
    in `longform.generate_codes` (resuming, checkpoints); a melody model's windows are conditioned on
    `melody`'s chroma of their own span.
    """
    codebooks = transformer.num_codebooks
    delays = transformer.delays
    pad = int(transformer.model.generation_config.pad_token_id)
    guided = is_guided(sampler.guidance_scale)
    repeat = 2 if guided else 1
    batch = inputs["input_ids"].shape[0]
    with torch.inference_mode():
        conditioning = Conditioning(transformer, inputs, guided, melody)
        if codes is None:
            codes = torch.empty((batch, codebooks, 0), dtype=torch.long, device=transformer.device)
        steps = None
        for index, window in enumerate(windows, start=first):
            done = codes.shape[-1]
            text = conditioning(done - window.context_frames, done + window.new_frames)
            if steps is None:
                capacity = text.offset + max(w.context_frames + w.new_frames for w in windows) + int(delays.max())
                steps = make_steps(transformer, repeat * batch, capacity, text, repeat)
            steps.load_text(text)
            prompt = codes[:, :, done - window.context_frames :] if window.context_frames else None
            delayed = DelayedWindow.start(prompt, batch, delays, window, pad)
            draws = streams.window(index, delayed.length - delayed.context - 1)
            run_window(steps, delayed, sampler, guided, draws)
            codes = torch.cat([codes, delayed.new_frames()], dim=-1)
            if on_window is not None:
                on_window(codes)
    return codes


class TokenLoop:
    """`engine.token_loop: fast` for one loaded model: its `CachedTransformer` and, on CUDA, its graphed steps."""

    def __init__(self, model: Any, device: str, window_frames: int, graphs: bool = True) -> None:
        self.transformer = CachedTransformer(model)
        capacity = window_frames + int(self.transformer.delays.max())
        use_graphs = graphs and str(device).startswith("cuda")
        self.make_steps = StepsCache(GraphedSteps, capacity) if use_graphs else eager_steps

    @staticmethod
    def supports(model: Any) -> bool:
        """MusicGen and MusicGen-Melody (conditioning prepended to the transformer's inputs), mono or stereo."""
        return type(model).__name__ in ("MusicgenForConditionalGeneration", "MusicgenMelodyForConditionalGeneration")

    def __call__(
        self,
        inputs: dict[str, Any],
        windows: list[Window],
        params: GenerationParams,
        streams: ClipStreams,
        codes: torch.Tensor | None = None,
        on_window: Callable[[torch.Tensor], None] | None = None,
        first: int = 0,
        melody: MelodyConditioning | None = None,
    ) -> torch.Tensor:
        sampler = CodeSampler(params)
        return run_token_loop(
            self.transformer, inputs, windows, sampler, streams, self.make_steps, codes, on_window, first, melody
        )
