"""Models: built in, a local folder, in the Hugging Face cache, or fetchable from the hub.

Checked from this machine, with its HF_TOKEN and cache (`engine.hf_home`); a remote worker
fetches into its own cache before its first clip, with the token it is forwarded.
"""

from __future__ import annotations

import os
from pathlib import Path

from musicsweep.config import EngineConfig
from musicsweep.doctor.result import FAIL, OK, SKIP, Check
from musicsweep.models import TINY_MODELS, resolve_model_name

TOKEN_FIX = "export HF_TOKEN=… (a token with access to the model; forward it to hosts with env: [HF_TOKEN])"


def model_checks(names: list[str], engine: EngineConfig) -> list[Check]:
    if not names:
        return [Check("models", SKIP, "none named", "musicsweep doctor --model small --model ./my-model")]
    return [model_check(name, engine) for name in names]


def model_check(name: str, engine: EngineConfig) -> Check:
    label = f"model {name}"
    if name in TINY_MODELS:
        return Check(label, OK, "built in, needs no download")
    if name.startswith(("/", "./", "../", "~/")):
        folder = Path(name).expanduser()
        if (folder / "config.json").is_file():
            return Check(label, OK, f"local folder {folder.resolve()}")
        return Check(label, FAIL, f"{folder} has no config.json", "point to a save_pretrained folder")
    repo = resolve_model_name(name)
    from huggingface_hub import try_to_load_from_cache

    from musicsweep.engine.cacheahead import hub_cache_dir

    cache = hub_cache_dir(engine.hf_home)
    cached = try_to_load_from_cache(repo, "config.json", cache_dir=str(cache) if cache else None)
    if isinstance(cached, str):
        return Check(label, OK, f"{repo} is in the Hugging Face cache ({Path(cached).parents[2]})")
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return Check(label, FAIL, f"{repo} is not in the cache and HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE")
    return hub_check(label, repo)


def hub_check(label: str, repo: str) -> Check:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    token = os.environ.get("HF_TOKEN") or None
    try:
        info = HfApi().model_info(repo, token=token, timeout=10)
    except GatedRepoError:
        detail = f"{repo} is gated: " + ("this HF_TOKEN has no access" if token else "it needs HF_TOKEN")
        return Check(label, FAIL, detail, TOKEN_FIX)
    except RepositoryNotFoundError:
        detail = f"{repo} not found on the hub" + ("" if token else " (or private: needs HF_TOKEN)")
        return Check(label, FAIL, detail, TOKEN_FIX if not token else "check the model name")
    except (HfHubHTTPError, OSError) as error:
        return Check(label, FAIL, f"cannot reach the hub for {repo}: {type(error).__name__}", "check the network")
    gated = " (gated: HF_TOKEN has access)" if getattr(info, "gated", False) else ""
    return Check(label, OK, f"{repo} can be fetched from the hub{gated}")
