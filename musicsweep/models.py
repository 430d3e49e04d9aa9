"""Model names: the built-in tiny ones, short aliases, Hugging Face hub ids and local folders."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from musicsweep.errors import MusicsweepError

ALIASES = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}
TINY_MODELS = ("tiny", "tiny-melody", "tiny-stereo", "tiny-stereo-melody")  # built offline (engine/tiny.py)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def validate_model_name(name: str, where: str) -> None:
    """Accept a tiny model, an alias, an `org/name` hub id or a local folder (absolute or ./relative)."""
    if name in TINY_MODELS or name in ALIASES or _HUB_ID.match(name) or name.startswith(("/", "./", "../", "~/")):
        return
    raise MusicsweepError(
        f"{where}: unknown model name form {name!r}: use one of {list(TINY_MODELS)}, one of {sorted(ALIASES)}, "
        "a hub id such as 'facebook/musicgen-small', or a local folder path"
    )


def resolve_model_name(name: str) -> str:
    """The name that from_pretrained receives (aliases expanded)."""
    return ALIASES.get(name, name)


@dataclass(frozen=True)
class ModelTraits:
    """What a model takes and writes, known before it is loaded: plan-time checks need it."""

    melody: bool  # chroma conditioning (MusicGen-Melody)
    channels: int  # 1, or 2 for the stereo checkpoints


def tiny_traits(name: str) -> ModelTraits:
    return ModelTraits(melody="melody" in name, channels=2 if "stereo" in name else 1)


def model_traits(name: str) -> ModelTraits:
    """A local folder's from its config.json; a tiny model's or hub id's from its name, as the
    checkpoints are named (facebook/musicgen-melody, facebook/musicgen-stereo-melody-large)."""
    folder = Path(name).expanduser()
    if name.startswith(("/", "./", "../", "~/")) and (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        decoder = config.get("decoder", {})
        return ModelTraits(config.get("model_type") == "musicgen_melody", int(decoder.get("audio_channels", 1)))
    return tiny_traits(resolve_model_name(name).rsplit("/", 1)[-1])
