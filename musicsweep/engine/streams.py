"""Each clip's own random stream, keyed by its seed, its window and the step.

The sampler draws one uniform variate per (clip, codebook) at every decode step (`CodeSampler`).
Clip b's draws for window w come from a generator seeded from (seed_b, w) alone, so they do not
depend on the clip's batch mates, their order, the batch size after a back-off, or where a long
clip resumes: window w of a clip resumed from a checkpoint after window w - 1 draws what it would
have drawn uninterrupted, and a checkpoint needs no generator state. Both token loops draw from
the same `window` tensor in the same order, so they stay equal to each other.

The draws are made on the CPU once per window (one small `torch.rand` per clip, ahead of the
window's steps) and copied to the device, so they are the same on every device; only the logits
they are compared against round differently across devices and dtypes.
"""

from __future__ import annotations

import hashlib
from typing import Any


def stream_seed(seed: int, window: int) -> int:
    """The 63-bit generator seed of one clip's window: a hash, so nearby seeds give unrelated streams."""
    digest = hashlib.sha256(f"{int(seed)}@{window}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class ClipStreams:
    """Uniform draws for a batch whose clips each have their own stream (see the module docstring)."""

    def __init__(self, seeds: list[int], codebooks: int, device: Any) -> None:
        self.seeds, self.codebooks, self.device = [int(s) for s in seeds], codebooks, device

    def window(self, index: int, steps: int) -> Any:
        """(steps, clips * codebooks, 1) uniforms in [0, 1): step i's draw for row b * codebooks + k,
        the row order of the sampler's logits, is element (i, k) of clip b's draws for window `index`."""
        import torch

        per_clip = [
            torch.rand((steps, self.codebooks), generator=torch.Generator().manual_seed(stream_seed(seed, index)))
            for seed in self.seeds
        ]
        return torch.stack(per_clip, dim=1).reshape(steps, -1, 1).to(self.device)
