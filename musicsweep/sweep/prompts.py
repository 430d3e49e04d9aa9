"""Read the existing scripts' `prompts.txt`: `PROMPT ; DURATION_IN_SECONDS ; FILE_NAME` per line.

Audio inputs follow as optional `key=value` fields (docs/modes.md):
`PROMPT ; DURATION ; FILE_NAME ; melody=tunes/a.wav ; audio_prompt=intro.wav ; prompt_in_output=true`,
paths relative to the prompts file's folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicsweep.errors import MusicsweepError


@dataclass(frozen=True)
class PromptRow:
    prompt: str
    duration_s: float
    file_name: str
    line: int
    inputs: dict[str, Any] = field(default_factory=dict)  # melody / audio_prompt (absolute paths), prompt_in_output
    source: str = ""  # the file, as given: every later error about this row names `source:line`

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


ROW_KEY = "row"  # the hidden variant key holding a variant's PromptRow (`VariantGenerator.from_prompts_file`)


INPUT_FIELDS = ("melody", "audio_prompt", "prompt_in_output")


def parse_input_fields(fields: list[str], folder: Path, where: str) -> dict[str, Any]:
    """The optional `key=value` fields after FILE_NAME."""
    inputs: dict[str, Any] = {}
    for text in fields:
        key, equals, value = (part.strip() for part in text.partition("="))
        if not equals or key not in INPUT_FIELDS:
            raise MusicsweepError(
                f"{where}: expected 'melody=PATH', 'audio_prompt=PATH' or 'prompt_in_output=BOOL', got {text!r}"
            )
        if key in inputs:
            raise MusicsweepError(f"{where}: field {key!r} given twice")
        if key == "prompt_in_output":
            if value not in ("true", "false"):
                raise MusicsweepError(f"{where}: field prompt_in_output must be true or false, got {value!r}")
            inputs[key] = value == "true"
        elif not value:
            raise MusicsweepError(f"{where}: field {key!r} is empty")
        else:
            inputs[key] = str(folder / Path(value).expanduser())
    return inputs


def parse_prompts(text: str, source: str, folder: Path | None = None) -> list[PromptRow]:
    """Parse the lines; `#` comments and blank lines are skipped; errors name file and line.

    Input paths are relative to `folder` (the file's own)."""
    rows: list[PromptRow] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        fields = [part.strip() for part in line.split(";")]
        if len(fields) < 3:
            raise MusicsweepError(f"{where}: expected 'PROMPT ; DURATION ; FILE_NAME', got {len(fields)} field(s)")
        prompt, duration_text, file_name = fields[:3]
        inputs = parse_input_fields(fields[3:], folder or Path.cwd(), where)
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
        rows.append(PromptRow(prompt, duration, stem, number, inputs, source))
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
    return parse_prompts(text, str(path), path.resolve().parent)
