"""Classifier-free guidance and top-k/top-p sampling over the surviving candidates only.

transformers samples with `torch.multinomial` over the whole 2048-code vocabulary after masking it,
which on CPU draws one exponential variate per code and sorts the vocabulary for top-k: at batch 8
those two ops took half of every tiny-model step. `CodeSampler` draws from the same
distribution (temperature, then top-k, then top-p, as transformers orders them) with one uniform
variate per row over the k candidates (inverse CDF). The variates come from each clip's own stream
(`engine.streams`), one window's at a time. Under transformers' `generate()` (`engine.token_loop: hf`)
it takes the window's draws step by step and hands over its choice as a greedy pick
(`do_sample=False`); the fast loop (`token_loop`) calls `guide` and `sample` directly, with the same
rows and draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from musicsweep.job import GenerationParams


def is_guided(guidance_scale: float) -> bool:
    """transformers' rule: guidance (and its unconditional rows) only above a scale of 1."""
    return guidance_scale is not None and guidance_scale > 1


class CodeSampler:
    """A transformers logits processor: guide, sample, and return scores whose argmax is the sampled code.

    As a processor it consumes `draws` (`ClipStreams.window`: one (rows, 1) row of uniforms per step)."""

    def __init__(self, params: GenerationParams, draws: Any = None) -> None:
        self.guidance_scale = params.guidance_scale
        self.top_k = params.top_k
        self.top_p = params.top_p if 0 < params.top_p < 1 else None
        self.temperature = params.temperature
        self.draws, self.step = draws, 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        rows = input_ids.shape[0]
        # MusicGen appends its own guidance processor after the caller's, so the scores usually still
        # hold the conditional and the unconditional halves; guide here unless that already happened.
        guided = scores
        if scores.shape[0] == 2 * rows:
            guided = self.guide(*scores.float().split(rows, dim=0))
        codes = self.sample(guided.float(), self.draws[self.step])
        self.step += 1
        # The same one-hot score in both halves: guidance of equal halves is a no-op, and a finite
        # floor (not -inf) keeps its (cond - uncond) free of NaN.
        choice = torch.full_like(scores, torch.finfo(scores.dtype).min)
        return choice.scatter_(1, codes.repeat(scores.shape[0] // rows, 1), 0.0)

    def guide(self, conditional: Any, unconditional: Any) -> Any:
        """Classifier-free guidance of float logits, as transformers' guidance processor computes it."""
        return unconditional + (conditional - unconditional) * self.guidance_scale

    def sample(self, logits: Any, uniform: Any) -> Any:
        """One code per row, shape (rows, 1), picked by `uniform` (rows, 1) in [0, 1) from each row's distribution."""
        import torch

        if self.temperature != 1:  # dividing by 1 changes nothing and costs a pass over every logit
            logits = logits / self.temperature
        candidates = None
        if self.top_k and self.top_k < logits.shape[-1]:
            logits, candidates = logits.topk(self.top_k, dim=-1, sorted=False)
        probs = torch.softmax(logits, dim=-1)
        if self.top_p is not None:
            probs, order = probs.sort(dim=-1, descending=True)
            candidates = order if candidates is None else candidates.gather(1, order)
            # keep the smallest head whose mass reaches top_p (always at least the most likely code)
            probs = probs.masked_fill(probs.cumsum(dim=-1) - probs >= self.top_p, 0.0)
        cdf = probs.cumsum(dim=-1)
        draw = uniform * cdf[:, -1:]
        # right=True never lands on a zero-probability candidate, except past the end when float
        # rounding makes the draw equal the total: then take the last candidate that has mass
        picked = torch.searchsorted(cdf, draw, right=True)
        last_with_mass = probs.shape[-1] - 1 - (probs.flip(-1) > 0).int().argmax(dim=-1, keepdim=True)
        picked = torch.minimum(picked, last_with_mass)
        return picked if candidates is None else candidates.gather(1, picked)


def sampling_kwargs(params: GenerationParams, draws: Any) -> dict[str, Any]:
    """generate() keywords for one window's call (`engine.token_loop: hf`), drawing `draws`.

    The processor list is fresh on every call, since MusicGen appends its guidance processor to it.
    """
    from transformers import LogitsProcessorList

    return {
        "do_sample": False,
        "guidance_scale": params.guidance_scale,
        "logits_processor": LogitsProcessorList([CodeSampler(params, draws)]),
    }


def stream_sampling(params: GenerationParams, streams: Any) -> Callable[[int, int], dict[str, Any]]:
    """`longform.generate_codes`'s `sampling`: the keywords of window `index`, whose `steps` draws
    come from `streams` (`streams.ClipStreams`)."""
    return lambda index, steps: sampling_kwargs(params, streams.window(index, steps))
