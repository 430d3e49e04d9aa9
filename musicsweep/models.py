"""Model names: the built-in `tiny`, short aliases, Hugging Face hub ids and local folders."""

from __future__ import annotations

import re

from musicsweep.errors import MusicsweepError

ALIASES = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def validate_model_name(name: str, where: str) -> None:
    """Accept `tiny`, an alias, an `org/name` hub id or a local folder (absolute or ./relative)."""
    if name == "tiny" or name in ALIASES or _HUB_ID.match(name) or name.startswith(("/", "./", "../", "~/")):
        return
    raise MusicsweepError(
        f"{where}: unknown model name form {name!r}: use 'tiny', one of {sorted(ALIASES)}, "
        "a hub id such as 'facebook/musicgen-small', or a local folder path"
    )


def resolve_model_name(name: str) -> str:
    """The name that from_pretrained receives (aliases expanded)."""
    return ALIASES.get(name, name)
