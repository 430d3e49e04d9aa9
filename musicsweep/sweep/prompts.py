"""Read the existing scripts' `prompts.txt`: `PROMPT ; DURATION_IN_SECONDS ; FILE_NAME` per line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from musicsweep.errors import MusicsweepError


@dataclass(frozen=True)
class PromptRow:
    prompt: str
    duration_s: float
    file_name: str
    line: int


def parse_prompts(text: str, source: str) -> list[PromptRow]:
    """Parse the lines; `#` comments and blank lines are skipped; errors name file and line."""
    rows: list[PromptRow] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        fields = [part.strip() for part in line.split(";")]
        if len(fields) != 3:
            raise MusicsweepError(f"{where}: expected 'PROMPT ; DURATION ; FILE_NAME', got {len(fields)} field(s)")
        prompt, duration_text, file_name = fields
        if not prompt:
            raise MusicsweepError(f"{where}: field PROMPT is empty")
        try:
            duration = float(duration_text)
        except ValueError:
            raise MusicsweepError(f"{where}: field DURATION is not a number: {duration_text!r}") from None
        if not duration > 0:
            raise MusicsweepError(f"{where}: field DURATION must be positive, got {duration_text!r}")
        if not math.isfinite(duration):
            raise MusicsweepError(f"{where}: field DURATION must be finite, got {duration_text!r}")
        if not file_name:
            raise MusicsweepError(f"{where}: field FILE_NAME is empty")
        stem = file_name.removesuffix(".wav")
        if stem in seen:
            raise MusicsweepError(f"{where}: field FILE_NAME {file_name!r} duplicates line {seen[stem]}")
        seen[stem] = number
        rows.append(PromptRow(prompt, duration, stem, number))
    if not rows:
        raise MusicsweepError(f"{source}: no prompts found")
    return rows


def read_prompts_file(path: Path) -> list[PromptRow]:
    """UTF-8, with a leading byte-order mark (as Windows editors write) ignored."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MusicsweepError(f"{path}: cannot read prompts file: {error.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise MusicsweepError(
            f"{path}:{line}: not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start}; save the file as UTF-8"
        ) from None
    return parse_prompts(text, str(path))
