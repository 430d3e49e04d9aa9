"""The audio codec: codes to audio span by span, each span as soon as the codes it needs are generated.

The codec decodes a long clip in spans of SPAN_FRAMES, each with SPAN_CONTEXT_FRAMES of
codes on either side that are decoded and then dropped at a frame boundary. With 2 s of context
the result equals one decode of the whole clip to float rounding (about 1e-7 of full scale, far
below a 16-bit step; tests/test_longform.py checks it), yet each span's activations stay in CPU
cache (a 300 s decode ran 3x faster) and GPU memory no longer grows with the clip's length.

A span depends only on its own slice of codes, so on CPU it is decoded on a background thread
once the window that completes that slice is generated, while the next windows generate on the
main thread (torch runs each thread's ops on its own core). The last spans of a long clip are all
that is left when its last window ends, and a clip resumed from a checkpoint decodes the windows
it skipped while it generates the rest. The spans and their slices are the same either way, so
the audio is too. On CUDA spans are decoded at the end: the decode is quick there, and a second
thread's kernels must not meet the token loop's CUDA graph capture.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

SPAN_FRAMES = 1500
SPAN_CONTEXT_FRAMES = 100


class SpanCodec:
    """Decodes (B, K, frames) codes, fed as they grow, into B (channels, samples) audio tensors.

    A stereo model's codebooks interleave its channels (left, right, left, ...): each channel's
    codes go through the mono codec on their own, as transformers' stereo `generate` does."""

    def __init__(self, model: Any, frames: int, background: bool, span: int = SPAN_FRAMES) -> None:
        self.model = model
        self.channels = int(model.decoder.config.audio_channels)
        self.hop = int(np.prod(model.config.audio_encoder.upsampling_ratios))
        starts = range(0, frames, span)
        # (start, end, left, right): the frames kept, and the slice decoded to get them
        self.spans = [
            (s, min(frames, s + span), max(0, s - SPAN_CONTEXT_FRAMES), min(frames, s + span + SPAN_CONTEXT_FRAMES))
            for s in starts
        ]
        self.background = background and len(self.spans) > 1  # one span: nothing to overlap
        self.pieces: list[Future | Any] = []
        self.pool: ThreadPoolExecutor | None = None

    def _decode(self, codes: Any, start: int, end: int, left: int) -> list[Any]:
        import torch

        codec = self.model.audio_encoder
        # The class's own decode: the `hf` token loop shadows the instance's to capture each window's codes.
        decode = type(codec).decode
        with torch.no_grad():
            audio = [
                torch.stack(
                    [
                        decode(codec, clip[c :: self.channels][None, None], audio_scales=[None]).audio_values[0, 0]
                        for c in range(self.channels)
                    ]
                )
                for clip in codes
            ]
        return [clip[:, (start - left) * self.hop : (end - left) * self.hop] for clip in audio]

    def feed(self, codes: Any) -> None:
        """Start every span whose slice `codes` (the frames generated so far) now covers."""
        while len(self.pieces) < len(self.spans):
            start, end, left, right = self.spans[len(self.pieces)]
            if codes.shape[-1] < right:
                return
            piece = codes[:, :, left:right].clone()
            if self.background:
                self.pool = self.pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="codec")
                self.pieces.append(self.pool.submit(self._decode, piece, start, end, left))
            else:
                self.pieces.append(self._decode(piece, start, end, left))

    def finish(self, codes: Any) -> list[Any]:
        """Decode what is left of the whole clip's codes; one (channels, samples) tensor per clip."""
        import torch

        self.background = False  # nothing left to overlap with
        self.feed(codes)
        try:
            pieces = [piece.result() if isinstance(piece, Future) else piece for piece in self.pieces]
        finally:
            self.close()
        return [torch.cat([piece[index] for piece in pieces], dim=-1) for index in range(codes.shape[0])]

    def close(self) -> None:
        """Drop spans not yet decoded (the batch stopped at a window, or failed)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def codes_to_audio(model: Any, codes: Any, span: int = SPAN_FRAMES) -> list[Any]:
    """Decode (B, K, T) codes to B (channels, samples) audio tensors at once, span by span."""
    return SpanCodec(model, codes.shape[-1], background=False, span=span).finish(codes)
