"""Logits that do not depend on a clip's batch mates, so that its own random stream (`streams`) is
all its audio depends on: same seed, same audio, in a batch of 8 or alone (CPU, float32).

Two things in a batch change a clip's logits by float rounding (about 1e-7), which is enough to
flip a sampled code now and then, after which the clip is another sample:

- prompts are padded to a common length, and attention (in the text encoder, and over the text in
  each step) sums its keys in vector lanes whose grouping follows that length: prompts are padded
  to a whole number of `TEXT_TOKENS` tokens, so a clip's text has the same length alone and beside
  any prompt of up to that many tokens;
- BLAS picks its matrix-multiply kernel by the number of rows: on x86 CPUs (MKL) one row, two or
  three rows, and four or more round differently, while all sizes of four rows and more agree, row
  for row. A batch is padded with copies of its first clip up to `MIN_ROWS` transformer rows
  (`extra_clips`): a clip alone with guidance runs as two clips.

What stays: other BLAS libraries and GPUs choose their kernels otherwise, so the claim is made, and
tested, for CPU float32 (tests/test_streams.py); elsewhere a clip alone and in a batch are samples
from the same distribution that may part after a flipped code. A batch mate whose prompt is longer
than `TEXT_TOKENS` tokens pads the batch to the next multiple, and a melody model attends to that
padding itself (prepended zeros, as transformers and audiocraft have it): such batches may part too.
"""

from __future__ import annotations

from typing import Any, TypeVar

MIN_ROWS = 4
TEXT_TOKENS = 64
T = TypeVar("T")


def extra_clips(count: int, guided: bool, device: Any) -> int:
    """Copies of the first clip that bring a CPU batch of `count` clips up to `MIN_ROWS` rows."""
    if not str(device).startswith("cpu"):
        return 0
    per_clip = 2 if guided else 1
    return max(0, -(-MIN_ROWS // per_clip) - count)


def padded(items: list[T] | None, extra: int) -> list[T] | None:
    return items if not items or not extra else items + items[:1] * extra
