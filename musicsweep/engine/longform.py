"""Long-form continuation at the code level, as audiocraft does it with `extend_stride`.

A clip up to `WINDOW_S` long is one window. A longer one starts with a full window; each further
window is conditioned on the last `WINDOW_S - stride` seconds of *codes* (passed as undelayed
`decoder_input_ids` of shape (B*K, P)) and adds `stride` seconds, the last one only what is left:
70 s with stride 18 is 30 + 18 + 18 + 4. `generate()` returns only audio, so the undelayed codes
of each window are captured by wrapping `audio_encoder.decode` for the duration of the call (the
wrapper skips the per-window decode). All codes are concatenated and decoded once per clip at the
end, so audio is never re-encoded and there are no seams from overlapping waveforms (the decode
runs in spans with enough code context to equal a single decode; see `decode_codes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

WINDOW_S = 30.0


@dataclass(frozen=True)
class Window:
    """One generate() call: condition on `context_frames` earlier frames, add `new_frames`."""

    context_frames: int
    new_frames: int


def plan_windows(total_frames: int, frame_rate: int, stride_s: float, window_s: float = WINDOW_S) -> list[Window]:
    window_frames = int(round(window_s * frame_rate))
    stride_frames = int(round(stride_s * frame_rate))
    if not 0 < stride_frames < window_frames:
        raise ValueError(f"stride {stride_s}s must be between 0 and the {window_s}s window")
    windows = [Window(0, min(total_frames, window_frames))]
    done = windows[0].new_frames
    while done < total_frames:
        new = min(stride_frames, total_frames - done)
        windows.append(Window(window_frames - stride_frames, new))
        done += new
    return windows


@contextmanager
def capture_codes(model: Any) -> Iterator[list[Any]]:
    """While active, `model.audio_encoder.decode` records its codes (1, B, K, T) instead of decoding."""
    encoder = model.audio_encoder
    captured: list[Any] = []

    def record(audio_codes, *args, **kwargs):
        captured.append(audio_codes)
        return SimpleNamespace(audio_values=audio_codes.new_zeros((audio_codes.shape[1], 1, 0)).float())

    shadowed = vars(encoder).get("decode")
    encoder.decode = record
    try:
        yield captured
    finally:
        if shadowed is None:
            del encoder.decode
        else:
            encoder.decode = shadowed


@contextmanager
def last_position_logits(model: Any) -> Iterator[None]:
    """While active, the code heads project only the last position: all that generate() samples from.

    MusicGen has no `logits_to_keep`, so a continuation window's 600-frame prompt had 4 x 2048
    logits computed for every prompt position (tens of MB) and thrown away: 0.1 s per window with the
    tiny model, 6% of a 300 s clip.
    """
    hooks = [
        head.register_forward_pre_hook(lambda _head, args: (args[0][:, -1:], *args[1:]))
        for head in model.decoder.lm_heads
    ]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def generate_codes(
    model: Any,
    inputs: dict[str, Any],
    windows: list[Window],
    sampling: Callable[[], dict[str, Any]],
    codes: Any = None,
    on_window: Callable[[Any], None] | None = None,
) -> Any:
    """Run the windows; returns the undelayed codes (B, K, total_frames) of the whole clip.

    `sampling` gives each window's generate() keywords afresh (MusicGen appends to a processor list).
    `codes` are those of earlier windows when resuming; `on_window(codes)` sees them after each window.
    """
    import torch

    num_codebooks = model.decoder.num_codebooks
    for window in windows:
        extra = {}
        if window.context_frames:
            prompt = codes[:, :, -window.context_frames :]
            extra["decoder_input_ids"] = prompt.reshape(-1, window.context_frames)
        with capture_codes(model) as captured, last_position_logits(model), torch.no_grad():
            model.generate(**inputs, **sampling(), **extra, max_new_tokens=window.new_frames + num_codebooks - 1)
        window_codes = captured[-1][0]
        expected = window.context_frames + window.new_frames
        if window_codes.shape[-1] != expected:
            raise RuntimeError(f"window returned {window_codes.shape[-1]} frames, expected {expected}")
        new = window_codes[:, :, window.context_frames :]
        codes = new if codes is None else torch.cat([codes, new], dim=-1)
        if on_window is not None:
            on_window(codes)
    return codes


# The codec decodes a long clip in spans of DECODE_SPAN_FRAMES, each with DECODE_CONTEXT_FRAMES of
# codes on either side that are decoded and then dropped at a frame boundary. With 2 s of context
# the result equals one decode of the whole clip to float rounding (about 1e-7 of full scale, far
# below a 16-bit step; tests/test_longform.py checks it), yet each span's activations stay in CPU
# cache (a 300 s decode ran 3x faster) and GPU memory no longer grows with the clip's length.
DECODE_SPAN_FRAMES = 1500
DECODE_CONTEXT_FRAMES = 100


def decode_codes(model: Any, codes: Any, span: int = DECODE_SPAN_FRAMES) -> list[Any]:
    """Decode (B, K, T) codes to B 1-D audio tensors, clip by clip and span by span (see above)."""
    import torch

    hop = int(np.prod(model.config.audio_encoder.upsampling_ratios))
    clips = []
    with torch.no_grad():
        for clip_codes in codes:
            frames = clip_codes.shape[-1]
            pieces = []
            for start in range(0, frames, span):
                end = min(frames, start + span)
                left, right = max(0, start - DECODE_CONTEXT_FRAMES), min(frames, end + DECODE_CONTEXT_FRAMES)
                window = clip_codes[None, None, :, left:right]
                audio = model.audio_encoder.decode(window, audio_scales=[None]).audio_values[0, 0]
                pieces.append(audio[(start - left) * hop : (end - left) * hop])
            clips.append(torch.cat(pieces))
    return clips
