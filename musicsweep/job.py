"""A job is one clip: what to generate and its stable id (`layout` says where its files live)."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from musicsweep.errors import MusicsweepError
from musicsweep.models import validate_model_name

AUDIO_FIELDS = ("prompt", "duration_s", "model", "seed", "params")
DEFAULT_MODEL = "tiny"
MAX_DURATION_S = 1800.0  # `max_duration_s` in musicsweep.yaml: a typo such as 1e9 must not launch
METADATA_PREFIX = "meta_"  # variant keys meant as metadata, beside those added with hide=True
INPUT_KEYS = ("melody", "audio_prompt")  # paths to audio files, read and checked at plan time (sweep/inputs.py)
JOB_KEYS = ("prompt", "duration_s", "model", "seed", "file_name", "base_name", "extra_pull_dirs")
JOB_KEYS = (*JOB_KEYS, *INPUT_KEYS, "prompt_in_output")
SAMPLING_RATE = 32000  # every MusicGen model's (EnCodec 32 kHz); input audio is converted to it


def number(value: Any, where: str, integer: bool = False) -> float | int:
    """A finite real (an integral one when `integer`); a bool, a string or NaN is an error naming the key."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MusicsweepError(f"{where} is not {kind}: {value!r}")
    if not math.isfinite(value):
        raise MusicsweepError(f"{where} is not finite: {value!r}")
    if integer:
        if value != int(value):
            raise MusicsweepError(f"{where} is not an integer: {value!r}")
        return int(value)
    return float(value)


def check_range(
    value: float, low: float, high: float, where: str, low_open: bool = False, high_open: bool = False
) -> None:
    """`low <= value <= high`, with either end open; the message states the range."""
    if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise MusicsweepError(f"{where} must be in {left}{low:g}, {high:g}{right}, got {value:g}")


# 64 bits: a million-clip sweep collides with odds of about 3e-8 (32 bits collided at 10,000 clips).
JOB_ID_HEX = 16
FILE_HASH_HEX = 8  # `{base}_{hash8}.wav`, the users' file-name convention


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; jobs that share them (and model and duration) batch together."""

    guidance_scale: float = 3.0
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    extend_stride_s: float = 18.0

    def as_dict(self) -> dict[str, float | int]:
        """`dataclasses.asdict` without its deep copy, which cost most of a 100,000-clip plan."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str) -> GenerationParams:
        """Checked values: top_p 0 means off, top_k 0 means every token; errors name the key."""
        checked = {key: number(value, f"{where}: key {key!r}", integer=key == "top_k") for key, value in values.items()}
        params = cls(**checked)
        inf = math.inf
        check_range(params.guidance_scale, 0, inf, f"{where}: key 'guidance_scale'")
        check_range(params.top_k, 0, inf, f"{where}: key 'top_k'")
        check_range(params.top_p, 0, 1, f"{where}: key 'top_p'")
        check_range(params.temperature, 0, inf, f"{where}: key 'temperature'", low_open=True)
        check_range(params.extend_stride_s, 0, 30, f"{where}: key 'extend_stride_s'", low_open=True, high_open=True)
        return params


@dataclass(frozen=True)
class InputAudio:
    """A melody or audio prompt as a job holds it: the content hash of its 32 kHz WAV (its store key,
    `StoreKeys.input_audio`), its length and channels; `source` is the user's path, for messages."""

    sha256: str
    samples: int  # at SAMPLING_RATE
    channels: int
    source: str = field(default="", compare=False)

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLING_RATE


def slugify(text: str, max_length: int = 40) -> str:
    """A file-name-safe, readable stem."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return slug[:max_length].rstrip("_") or "clip"


@dataclass(frozen=True)
class Job:
    """One clip to generate. Frozen, so a job's id cannot drift from its content, and so it is
    computed once per job (`cached_property`): a sweep of 100,000 clips asks for ids millions of times."""

    sweep: str
    prompt: str
    duration_s: float
    model: str
    seed: int
    base_name: str
    params: GenerationParams = field(default_factory=GenerationParams)
    variant: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    extra_pull_dirs: tuple[str, ...] = ()
    melody: InputAudio | None = None  # chroma conditioning, on melody models
    audio_prompt: InputAudio | None = None  # audio to continue: the clip's first `audio_prompt.seconds`
    prompt_in_output: bool = False  # the written WAV starts with the audio prompt (as the codec renders it)
    channels: int = 1  # of the written WAV: the model's

    @cached_property
    def audio_content(self) -> str:
        """The canonical JSON of the fields that change the audio (an input by its content hash;
        the keys of inputs a job lacks are left out, so a text-only job keeps its id)."""
        content = {"prompt": self.prompt, "duration_s": float(self.duration_s), "model": self.model}
        content |= {"seed": int(self.seed), "params": self.params.as_dict()}
        if self.melody is not None:
            content["melody"] = self.melody.sha256
        if self.audio_prompt is not None:
            content |= {"audio_prompt": self.audio_prompt.sha256, "prompt_in_output": self.prompt_in_output}
        return json.dumps(content, sort_keys=True, separators=(",", ":"))

    @property
    def inputs(self) -> tuple[InputAudio, ...]:
        return tuple(audio for audio in (self.melody, self.audio_prompt) if audio is not None)

    @property
    def wav_seconds(self) -> float:
        return self.wav_samples / SAMPLING_RATE

    @property
    def wav_samples(self) -> int:
        """Samples per channel of the written WAV: the clip less a dropped audio prompt."""
        total = int(round(self.duration_s * SAMPLING_RATE))
        if self.audio_prompt is not None and not self.prompt_in_output:
            return total - self.audio_prompt.samples
        return total

    @cached_property
    def job_id(self) -> str:
        """16 hex digits of the SHA-256 of `audio_content`: names markers, claims and cost rows."""
        return hashlib.sha256(self.audio_content.encode()).hexdigest()[:JOB_ID_HEX]

    @property
    def hash8(self) -> str:
        """The job id's first 8 hex digits, kept in the WAV name (the same hash8 as before)."""
        return self.job_id[:FILE_HASH_HEX]

    @cached_property
    def output_name(self) -> str:
        return f"{self.base_name}_{self.hash8}.wav"

    @property
    def group_key(self) -> tuple:
        """Jobs with the same key can share one generate() call: inputs of one shape (melodies of any
        content; audio prompts of one length, kept or dropped alike)."""
        key: tuple = (self.model, self.params, float(self.duration_s))
        if self.melody is not None or self.audio_prompt is not None:
            prompt = None if self.audio_prompt is None else (self.audio_prompt.samples, self.prompt_in_output)
            key += (self.melody is not None, prompt)
        return key

    @classmethod
    def from_variant(
        cls,
        variant: dict[str, Any],
        sweep: str,
        where: str,
        max_duration_s: float = MAX_DURATION_S,
        metadata_keys: frozenset[str] = frozenset(),
        inputs: dict[str, InputAudio] | None = None,
        channels: int = 1,
    ) -> Job:
        """Build a job from a variant dict; `where` names the variant in error messages.

        Every key must be a job or generation key, a key in `metadata_keys` (added with
        hide=True) or one named `meta_...`: a misspelt generation key must not be ignored silently.
        `inputs` holds the files the variant's `melody` / `audio_prompt` paths name, as read and
        checked by `sweep.inputs`; `channels` is the model's (`models.model_traits`).
        """
        check_keys(variant, metadata_keys, where)
        missing = [key for key in ("prompt", "duration_s") if key not in variant]
        if missing:
            raise MusicsweepError(f"{where}: missing key {missing[0]!r}")
        if not isinstance(variant["prompt"], str):
            raise MusicsweepError(f"{where}: key 'prompt' must be a string, got {variant['prompt']!r}")
        prompt = variant["prompt"].strip()
        if not prompt:
            raise MusicsweepError(f"{where}: key 'prompt' is empty")
        duration = number(variant["duration_s"], f"{where}: key 'duration_s'")
        if not duration > 0:
            raise MusicsweepError(f"{where}: key 'duration_s' must be positive, got {variant['duration_s']!r}")
        if duration > max_duration_s:
            raise MusicsweepError(
                f"{where}: key 'duration_s' is {duration:g} s, above max_duration_s ({max_duration_s:g} s; "
                "raise it in musicsweep.yaml if you mean it)"
            )
        model = str(variant.get("model", DEFAULT_MODEL))
        validate_model_name(model, f"{where}: key 'model'")
        seed = number(variant.get("seed", 0), f"{where}: key 'seed'", integer=True)
        params = GenerationParams.from_mapping(
            {key: variant[key] for key in GenerationParams.__dataclass_fields__ if key in variant}, where
        )
        base = slugify(str(variant.get("file_name") or variant.get("base_name") or prompt))
        extra = tuple(str(path) for path in variant.get("extra_pull_dirs", ()))
        inputs = inputs or {}
        unread = [key for key in INPUT_KEYS if variant.get(key) is not None and key not in inputs]
        if unread:
            raise MusicsweepError(f"{where}: key {unread[0]!r} was not read (sweep.inputs.read_inputs reads it)")
        keep = variant.get("prompt_in_output")
        if keep is not None and not isinstance(keep, bool):
            raise MusicsweepError(f"{where}: key 'prompt_in_output' must be true or false, got {keep!r}")
        if keep is not None and "audio_prompt" not in inputs:
            raise MusicsweepError(f"{where}: key 'prompt_in_output' needs an 'audio_prompt'")
        keep = bool(keep)
        melody, audio_prompt = inputs.get("melody"), inputs.get("audio_prompt")
        return cls(
            sweep,
            prompt,
            duration,
            model,
            seed,
            base,
            params,
            dict(variant),
            extra,
            melody,
            audio_prompt,
            keep,
            channels,
        )


def check_keys(variant: dict[str, Any], metadata_keys: frozenset[str], where: str) -> None:
    """Refuse a key that is neither a job key nor metadata, suggesting the closest known key."""
    known = (*JOB_KEYS, *GenerationParams.__dataclass_fields__)
    for key in variant:
        if key in known or key in metadata_keys or (isinstance(key, str) and key.startswith(METADATA_PREFIX)):
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
        hint = f": did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
        keep = f"to keep it as metadata, add it with hide=True or name it '{METADATA_PREFIX}{key}'"
        raise MusicsweepError(f"{where}: unknown key {key!r}{hint} ({keep})")
