"""Cache-ahead: fetch every model a worker needs before its first clip, then stay offline.

As the RunPod worker template does: a model that cannot be fetched fails its jobs at once, with
one clear line, instead of failing after minutes of other work; and a flaky hub cannot break a
long run halfway, since generation loads from the local snapshot folder with the hub offline.
`HF_HUB_OFFLINE=1` in the environment is honoured here (read at call time, not at import), so
tests and air-gapped hosts never touch the network.
"""

from __future__ import annotations

import os
from pathlib import Path

from musicsweep.errors import MusicsweepError
from musicsweep.models import TINY_MODELS, resolve_model_name

# Weights (safetensors preferred), configs and tokenizer files; never both weight formats.
_METADATA_PATTERNS = ["*.json", "*.model", "*.txt"]
_TRUTHY = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY


def hub_cache_dir(hf_home: str | None) -> Path | None:
    """The hub cache inside the configured HF_HOME; None means huggingface_hub's own default."""
    return Path(hf_home).expanduser() / "hub" if hf_home else None


def fetch_model(name: str, hf_home: str | None) -> str:
    """Return what `load_model` should load for `name`: `tiny`, a local folder, or a cached snapshot folder."""
    if name in TINY_MODELS:
        return name
    resolved = resolve_model_name(name)
    if resolved.startswith(("/", "./", "../", "~/")):
        folder = Path(resolved).expanduser()
        if not (folder / "config.json").is_file():
            raise MusicsweepError(f"model {name!r}: no config.json in folder {folder}")
        return str(folder)
    from huggingface_hub import snapshot_download

    cache_dir = hub_cache_dir(hf_home)
    offline = hub_offline()
    try:
        folder = Path(
            snapshot_download(
                resolved,
                cache_dir=cache_dir,
                local_files_only=offline,
                allow_patterns=[*_METADATA_PATTERNS, "*.safetensors"],
            )
        )
        if not any(folder.glob("*.safetensors")):
            folder = Path(
                snapshot_download(resolved, cache_dir=cache_dir, local_files_only=offline, allow_patterns=["*.bin"])
            )
    except Exception as error:
        where = cache_dir or "the default Hugging Face cache"
        mode = " with HF_HUB_OFFLINE=1" if offline else ""
        reason = (str(error).strip().splitlines() or [""])[0]
        raise MusicsweepError(
            f"model {name!r} ({resolved}) cannot be fetched into {where}{mode}: {type(error).__name__}: {reason}"
        ) from None
    return str(folder)


def cache_ahead(names: list[str], hf_home: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Fetch each distinct model once; returns (sources by name, one-line errors by name).

    `hf_home` becomes this process's HF_HOME; afterwards the hub is offline for it and its children.
    """
    if hf_home:
        os.environ["HF_HOME"] = str(Path(hf_home).expanduser())
    sources: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in dict.fromkeys(names):
        try:
            sources[name] = fetch_model(name, hf_home)
        except MusicsweepError as error:
            errors[name] = str(error)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return sources, errors
