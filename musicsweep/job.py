"""A job is one clip: what to generate and its stable id (`layout` says where its files live)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from musicsweep.errors import MusicsweepError
from musicsweep.models import validate_model_name

AUDIO_FIELDS = ("prompt", "duration_s", "model", "seed", "params")
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

    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str) -> GenerationParams:
        params = cls(**{key: type(getattr(cls, key))(value) for key, value in values.items()})
        if params.guidance_scale < 0 or params.top_k < 0 or params.temperature <= 0:
            raise MusicsweepError(f"{where}: generation parameters out of range: {params}")
        if not 0 < params.extend_stride_s < 30:
            raise MusicsweepError(f"{where}: extend_stride_s must be between 0 and 30 s, got {params.extend_stride_s}")
        return params


def slugify(text: str, max_length: int = 40) -> str:
    """A file-name-safe, readable stem."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return slug[:max_length].rstrip("_") or "clip"


@dataclass(frozen=True)
class Job:
    """One clip to generate. Frozen, so a job's id cannot drift from its content."""

    sweep: str
    prompt: str
    duration_s: float
    model: str
    seed: int
    base_name: str
    params: GenerationParams = field(default_factory=GenerationParams)
    variant: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    extra_pull_dirs: tuple[str, ...] = ()

    @property
    def audio_content(self) -> str:
        """The canonical JSON of the fields that change the audio."""
        content = {"prompt": self.prompt, "duration_s": float(self.duration_s), "model": self.model}
        content |= {"seed": int(self.seed), "params": asdict(self.params)}
        return json.dumps(content, sort_keys=True, separators=(",", ":"))

    @property
    def job_id(self) -> str:
        """16 hex digits of the SHA-256 of `audio_content`: names markers, claims and cost rows."""
        return hashlib.sha256(self.audio_content.encode()).hexdigest()[:JOB_ID_HEX]

    @property
    def hash8(self) -> str:
        """The job id's first 8 hex digits, kept in the WAV name (the same hash8 as before)."""
        return self.job_id[:FILE_HASH_HEX]

    @property
    def output_name(self) -> str:
        return f"{self.base_name}_{self.hash8}.wav"

    @property
    def group_key(self) -> tuple[str, GenerationParams, float]:
        """Jobs with the same key can share one generate() call."""
        return (self.model, self.params, float(self.duration_s))

    @classmethod
    def from_variant(cls, variant: dict[str, Any], sweep: str, where: str) -> Job:
        """Build a job from a variant dict; `where` names the variant in error messages."""
        missing = [key for key in ("prompt", "duration_s") if key not in variant]
        if missing:
            raise MusicsweepError(f"{where}: missing key {missing[0]!r}")
        prompt = str(variant["prompt"]).strip()
        if not prompt:
            raise MusicsweepError(f"{where}: key 'prompt' is empty")
        try:
            duration = float(variant["duration_s"])
        except (TypeError, ValueError):
            raise MusicsweepError(f"{where}: key 'duration_s' is not a number: {variant['duration_s']!r}") from None
        if not duration > 0:
            raise MusicsweepError(f"{where}: key 'duration_s' must be positive, got {variant['duration_s']!r}")
        model = str(variant.get("model", "tiny"))
        validate_model_name(model, f"{where}: key 'model'")
        try:
            seed = int(variant.get("seed", 0))
        except (TypeError, ValueError):
            raise MusicsweepError(f"{where}: key 'seed' is not an integer: {variant['seed']!r}") from None
        params = GenerationParams.from_mapping(
            {key: variant[key] for key in GenerationParams.__dataclass_fields__ if key in variant}, where
        )
        base = slugify(str(variant.get("file_name") or variant.get("base_name") or prompt))
        extra = tuple(str(path) for path in variant.get("extra_pull_dirs", ()))
        return cls(sweep, prompt, duration, model, seed, base, params, dict(variant), extra)
