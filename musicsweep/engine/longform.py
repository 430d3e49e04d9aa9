"""Long-form continuation at the code level, as audiocraft does it with `extend_stride`.

A clip up to `WINDOW_S` long is one window (its first frames given when it continues an audio
prompt). A longer one starts with a full window; each further
window is conditioned on the last `WINDOW_S - stride` seconds of *codes* (passed as undelayed
`decoder_input_ids` of shape (B*K, P)) and adds `stride` seconds, the last one only what is left:
70 s with stride 18 is 30 + 18 + 18 + 4. `generate()` returns only audio, so the undelayed codes
of each window are captured by wrapping `audio_encoder.decode` for the duration of the call (the
wrapper skips the per-window decode). All codes are concatenated and decoded per clip, so audio is
never re-encoded and there are no seams from overlapping waveforms (the decode runs in spans with
enough code context to equal a single decode; see `engine.codec`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

WINDOW_S = 30.0


@dataclass(frozen=True)
class Window:
    """One generate() call: condition on `context_frames` earlier frames, add `new_frames`."""

    context_frames: int
    new_frames: int


def plan_windows(
    total_frames: int, frame_rate: int, stride_s: float, window_s: float = WINDOW_S, prompt_frames: int = 0
) -> list[Window]:
    """The windows of a clip of `total_frames`; an audio prompt's `prompt_frames` (the clip's first
    frames, given) are the first window's context."""
    window_frames = int(round(window_s * frame_rate))
    stride_frames = int(round(stride_s * frame_rate))
    if not 0 < stride_frames < window_frames:
        raise ValueError(f"stride {stride_s}s must be between 0 and the {window_s}s window")
    if not 0 <= prompt_frames < min(window_frames, total_frames):
        raise ValueError(f"a prompt of {prompt_frames} frames must be shorter than the window and the clip")
    windows = [Window(prompt_frames, min(total_frames, window_frames) - prompt_frames)]
    done = min(total_frames, window_frames)
    while done < total_frames:
        new = min(stride_frames, total_frames - done)
        windows.append(Window(window_frames - stride_frames, new))
        done += new
    return windows


def delay_steps(model: Any) -> int:
    """Steps MusicGen's delay pattern adds to a window: one per codebook of a channel."""
    return int(model.decoder.num_codebooks) // int(model.decoder.config.audio_channels)


def captured_window(captured: list[Any]) -> Any:
    """The codes (B, K, T) one generate() passed to the codec: stereo's two calls (left, right) interleaved."""
    import torch

    if len(captured) == 1:
        return captured[0][0]
    return torch.stack([c[0] for c in captured], dim=2).flatten(1, 2)


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
    sampling: Callable[[int, int], dict[str, Any]],
    codes: Any = None,
    on_window: Callable[[Any], None] | None = None,
    conditioning: Callable[[int, int], dict[str, Any]] | None = None,
    first: int = 0,
) -> Any:
    """Run the windows; returns the undelayed codes (B, K, total_frames) of the whole clip.

    `sampling(index, steps)` gives the generate() keywords of the clip's window `index` (`first` is
    the index of `windows[0]`) afresh, MusicGen appending to its processor list. `codes` are those
    of earlier windows (or an audio prompt's) when resuming; `on_window(codes)` sees them after each
    window; `conditioning(start, end)` gives generate() keywords for the window over frames
    start..end (a melody's chroma).
    """
    import torch

    for index, window in enumerate(windows, start=first):
        extra = {}
        done = 0 if codes is None else codes.shape[-1]
        if window.context_frames:
            prompt = codes[:, :, -window.context_frames :]
            extra["decoder_input_ids"] = prompt.reshape(-1, window.context_frames)
        if conditioning is not None:
            extra |= conditioning(done - window.context_frames, done + window.new_frames)
        steps = window.new_frames + delay_steps(model) - 1
        with capture_codes(model) as captured, last_position_logits(model), torch.no_grad():
            model.generate(**inputs, **sampling(index, steps), **extra, max_new_tokens=steps)
        window_codes = captured_window(captured)
        expected = window.context_frames + window.new_frames
        if window_codes.shape[-1] != expected:
            raise RuntimeError(f"window returned {window_codes.shape[-1]} frames, expected {expected}")
        new = window_codes[:, :, window.context_frames :]
        codes = new if codes is None else torch.cat([codes, new], dim=-1)
        if on_window is not None:
            on_window(codes)
    return codes
