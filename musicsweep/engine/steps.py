"""Transformer step runners: eager, static-shape, and on CUDA one CUDA graph per attention bucket.

At batch 1 an eager step of musicgen-small launches several hundred small kernels: the GPU waits
on Python and launches, not on memory (issue 18: 10-25 ms per step against a 0.26 ms bandwidth
floor). A CUDA graph replays the whole step with one launch, but it needs fixed shapes and fixed
addresses, so `StaticSteps` keeps:

- one KV cache for a full 30 s window (`capacity`), reused by every batch of the same size;
- the text's cross-attention keys and values copied into buffers padded to `text_len`, the
  padding masked;
- the step's codes and position in fixed tensors; the step attends to `cache[:bucket]`, the next
  multiple of `BUCKET` positions, with the positions not yet written masked. A 5 s clip thus reads
  a 256-position cache, not a 1500-position one.

`StaticSteps` runs that step eagerly, which lets CPU tests check it; `GraphedSteps` captures it per
bucket on first use and replays it. The graphs of one runner share a memory pool; each keeps its
output alive, so a replay never overwrites another graph's output.
"""

from __future__ import annotations

import torch

from musicsweep.engine.transformer import CachedTransformer, KVCache, TextKV

BUCKET = 256
TEXT_BUCKET = 64


class EagerSteps:
    """Prefill and per-step transformer calls over one batch's cache and text, run eagerly."""

    def __init__(self, transformer: CachedTransformer, cache: KVCache, text: TextKV, repeat: int) -> None:
        self.transformer, self.cache, self.text, self.repeat = transformer, cache, text, repeat

    def load_text(self, text: TextKV) -> None:
        """Condition the next window on `text` (a melody model's prefix changes with each window's chroma)."""
        self.text = text

    def prefill(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits after the delayed codes (batch, codebooks, T) at positions 0..T-1 (after the text's prefix)."""
        hidden = self.transformer.embed(codes, self.text.offset, self.repeat)
        if self.text.prefix is not None:
            hidden = torch.cat([self.text.prefix, hidden], dim=1)
        return self.transformer.forward(hidden, 0, self.cache, self.text)

    def step(self, column: torch.Tensor, position: int) -> torch.Tensor:
        """Logits after one more column (batch, codebooks) at `position` (after the text's prefix)."""
        position += self.text.offset
        hidden = self.transformer.embed(column[:, :, None], position, self.repeat)
        return self.transformer.forward(hidden, position, self.cache, self.text)


def eager_steps(transformer: CachedTransformer, rows: int, capacity: int, text: TextKV, repeat: int) -> EagerSteps:
    """A fresh cache sized for this batch's windows: the CPU path, where shapes may change every step."""
    return EagerSteps(transformer, transformer.new_cache(rows, capacity), text, repeat)


def padded(length: int, step: int) -> int:
    return -(-length // step) * step


class StaticSteps(EagerSteps):
    """Transformer steps with fixed shapes and buffers (see module docstring), run eagerly."""

    def __init__(self, transformer: CachedTransformer, batch: int, repeat: int, capacity: int, text_len: int) -> None:
        rows = repeat * batch
        shape = (rows, transformer.heads, text_len, transformer.head_dim)
        layers = range(0 if transformer.prepends else len(transformer.layers))  # a melody model: no cross-attention
        text = TextKV(
            keys=[torch.zeros(shape, dtype=transformer.dtype, device=transformer.device) for _ in layers],
            values=[torch.zeros(shape, dtype=transformer.dtype, device=transformer.device) for _ in layers],
            mask=torch.zeros((rows, 1, 1, text_len), dtype=transformer.dtype, device=transformer.device),
        )
        super().__init__(transformer, transformer.new_cache(rows, capacity), text, repeat)
        self.column = torch.zeros((batch, transformer.num_codebooks), dtype=torch.long, device=transformer.device)
        self.position = torch.zeros(1, dtype=torch.long, device=transformer.device)

    def load_text(self, text: TextKV) -> None:
        """Copy one batch's cross-attention keys, values and mask into the padded buffers."""
        length = text.mask.shape[-1]
        for static, batch in zip([*self.text.keys, *self.text.values], [*text.keys, *text.values], strict=True):
            static.zero_()
            static[:, :, :length].copy_(batch)
        self.text.mask.fill_(torch.finfo(self.text.mask.dtype).min)
        self.text.mask[..., :length].copy_(text.mask)
        self.text.prefix = text.prefix  # read by the eager prefill only, never by a graph

    def bucket(self, position: int) -> int:
        return min(self.cache.capacity, padded(position + 1, BUCKET))

    def step(self, column: torch.Tensor, position: int) -> torch.Tensor:
        position += self.text.offset
        self.column.copy_(column)
        self.position.fill_(position)
        return self.run(self.bucket(position))

    def run(self, bucket: int) -> torch.Tensor:
        hidden = self.transformer.embed(self.column[:, :, None], self.position, self.repeat)
        return self.transformer.forward(hidden, self.position, self.cache, self.text, bucket=bucket)


class GraphedSteps(StaticSteps):
    """`StaticSteps` whose step is a CUDA graph per bucket, captured on first use."""

    def __init__(self, transformer: CachedTransformer, batch: int, repeat: int, capacity: int, text_len: int) -> None:
        super().__init__(transformer, batch, repeat, capacity, text_len)
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def run(self, bucket: int) -> torch.Tensor:
        if bucket not in self.graphs:
            self.graphs[bucket] = self.capture(bucket)
        graph, logits = self.graphs[bucket]
        graph.replay()
        return logits

    def capture(self, bucket: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Warm up on a side stream (as torch.cuda.graphs requires), then record one step.

        The warm-up really runs the current step: it writes the same keys and values the replay
        writes next, so it changes nothing.
        """
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                super().run(bucket)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = super().run(bucket)
        return graph, logits


class StepsCache:
    """The `StaticSteps` of the last batch shape, kept so its graphs serve the next batch alike.

    One at a time: a new shape (another batch size after a back-off, a longer prompt) frees the old
    runner's cache and graphs first, so two full-window caches never share the GPU.
    """

    def __init__(self, steps_class: type[StaticSteps], capacity: int) -> None:
        # a whole number of buckets: every attended length is a multiple of BUCKET, which keeps
        # the masked attention on CUDA's memory-efficient kernel (it wants aligned mask rows)
        self.steps_class, self.capacity = steps_class, padded(capacity, BUCKET)
        self.key: tuple[int, int, int] | None = None
        self.steps: StaticSteps | None = None

    def __call__(
        self, transformer: CachedTransformer, rows: int, capacity: int, text: TextKV, repeat: int
    ) -> StaticSteps:
        text_len = padded(text.mask.shape[-1], TEXT_BUCKET)
        key = (rows, repeat, text_len)
        if capacity > self.capacity:  # a melody model's prefix, longer than the last one
            self.capacity, self.key = padded(capacity, BUCKET), None
        if self.key != key:
            self.steps = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.steps = self.steps_class(transformer, rows // repeat, repeat, self.capacity, text_len)
            self.key = key
        self.steps.load_text(text)
        return self.steps
