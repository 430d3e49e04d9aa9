"""`python -m musicsweep.launch`: the Hydra app that composes a sweep from `configs/` and overrides.

Hydra says WHAT to generate (the `sweep` axes, `model`) and WHICH backend and store; `musicsweep.yaml`
says WHERE (hosts, bucket, prices, engine). A value set on the Hydra side wins; a null there keeps
musicsweep.yaml's. The composed config becomes a VariantGenerator and goes through `run_sweep`, the
same path as a sweep script, so both give the same jobs. With `-m`, the musicsweep launcher plugin
gathers every combination into one sweep and returns once it is submitted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from musicsweep.backends import BACKEND_NAMES, unknown_backend
from musicsweep.cli.run import run_sweep
from musicsweep.config import Config, StoreConfig, check_store_url, load_config, typed_section
from musicsweep.errors import MusicsweepError
from musicsweep.job import MAX_DURATION_S, GenerationParams
from musicsweep.sweep.plan import Plan, jobs_from_variants
from musicsweep.sweep.variants import NAME_KEY, VariantGenerator, canonical_json

# From a source checkout the tree is `configs/` at the repo root; an installed wheel carries it
# inside the package (pyproject's force-include).
_PACKAGE = Path(__file__).resolve().parents[1]
_PACKAGED_CONFIGS = _PACKAGE / "configs"
CONFIG_DIR = str(_PACKAGED_CONFIGS if _PACKAGED_CONFIGS.is_dir() else _PACKAGE.parent / "configs")
FLAGS = {"--dry-run": "launch.dry_run=true", "--yes": "launch.yes=true", "-y": "launch.yes=true"}


@dataclass(frozen=True)
class SweepAxes:
    """The `sweep` section; a scalar stands for a one-element list (as `-m sweep.durations=30,60` gives)."""

    prompts: list[str] | str | None = None
    durations: list[float] | float | None = None
    prompts_file: str | None = None
    models: list[str] | str | None = None
    seeds: list[int] | int = 0
    guidance_scale: list[float] | float | None = None
    top_k: list[int] | int | None = None
    top_p: list[float] | float | None = None
    temperature: list[float] | float | None = None
    extend_stride_s: list[float] | float | None = None
    melodies: list[str] | str | None = None
    audio_prompts: list[str] | str | None = None
    prompt_in_output: bool | None = None


@dataclass(frozen=True)
class SweepRequest:
    """One composed config, reduced to the sweep it asks for and where it runs."""

    name: str | None
    variants: list[dict[str, Any]]
    config: Config
    dry_run: bool
    yes: bool


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def sweep_variants(axes: SweepAxes, model: str) -> list[dict[str, Any]]:
    """The variants a sweep script would get from the same `VariantGenerator.add` calls."""
    if axes.prompts_file is not None:
        if axes.prompts is not None or axes.durations is not None:
            raise MusicsweepError("sweep.prompts_file: give either a prompts file or sweep.prompts/durations, not both")
        generator = VariantGenerator.from_prompts_file(axes.prompts_file)
    else:
        if axes.prompts is None or axes.durations is None:
            missing = "sweep.prompts" if axes.prompts is None else "sweep.durations"
            raise MusicsweepError(f"{missing}: required, e.g. 'sweep.prompts=[lofi piano]' 'sweep.durations=[30]'")
        durations = as_list(axes.durations)
        for index, duration in enumerate(durations):
            if not duration > 0:
                raise MusicsweepError(f"sweep.durations[{index}]: must be positive, got {duration:g}")
        generator = VariantGenerator()
        generator.add("prompt", as_list(axes.prompts))
        generator.add("duration_s", durations)
    generator.add("model", as_list(axes.models) if axes.models is not None else [model])
    generator.add("seed", as_list(axes.seeds))
    for key in GenerationParams.__dataclass_fields__:
        if getattr(axes, key) is not None:
            generator.add(key, as_list(getattr(axes, key)))
    for key, axis in (("melody", axes.melodies), ("audio_prompt", axes.audio_prompts)):
        if axis is not None:
            generator.add(key, as_list(axis))
    if axes.prompt_in_output is not None:
        generator.add("prompt_in_output", [axes.prompt_in_output])
    return generator.variants()


def store_override(base: StoreConfig, section: dict[str, Any]) -> StoreConfig:
    """musicsweep.yaml's store with every non-null Hydra `store` field on top; `kind` must match the url."""
    changes = {
        key: section[key] for key in ("url", "endpoint_url", "region", "profile") if section.get(key) is not None
    }
    if changes.get("url"):
        check_store_url(str(changes["url"]), "store.url")
    if changes.get("url") and not str(changes["url"]).startswith("s3://"):
        changes["url"] = str(Path(changes["url"]).expanduser().resolve())
    store = dataclasses.replace(base, **changes)
    kind = section.get("kind")
    if kind is not None and (kind == "s3") != store.url.startswith("s3://"):
        wanted = "s3://bucket/prefix" if kind == "s3" else "a folder"
        raise MusicsweepError(f"store={kind}: the store url is {store.url!r}; give store.url={wanted}")
    return store


def infrastructure(section: dict[str, Any]) -> Config:
    """musicsweep.yaml, with the Hydra side's backend, backend settings and store on top."""
    config = load_config()
    backend = section["backend"].get("name") or config.backend
    if backend not in BACKEND_NAMES:
        raise unknown_backend(backend, "backend.name")
    backends = dict(config.backends)
    if section["backend"].get("settings"):
        backends[backend] = {**config.backend_section(backend), **section["backend"]["settings"]}
    store = store_override(config.store, section.get("store") or {})
    return config.with_overrides(backend=backend, backends=backends, store=store)


def request_from_cfg(cfg: DictConfig) -> SweepRequest:
    """Validate one composed config; errors name the Hydra key."""
    section = OmegaConf.to_container(cfg, resolve=True)
    axes = typed_section(SweepAxes, section["sweep"], "sweep")
    model = str(section["model"]["name"])
    name = section.get("name")
    flags = section["launch"]
    return SweepRequest(
        None if name is None else str(name),
        sweep_variants(axes, model),
        infrastructure(section),
        bool(flags["dry_run"]),
        bool(flags["yes"]),
    )


def stable_name(variants: list[dict[str, Any]], max_duration_s: float = MAX_DURATION_S) -> str:
    """`sweep-<hash8>` of the job ids: the same command names the same sweep, so reruns skip finished clips."""
    ids = sorted(job.job_id for job in jobs_from_variants(variants, "sweep", max_duration_s))
    return f"sweep-{hashlib.sha256(','.join(ids).encode()).hexdigest()[:8]}"


def run_requests(requests: list[SweepRequest]) -> Plan:
    """One sweep from one or more composed configs (a multirun's combinations), via `run_sweep`."""
    first = requests[0]
    for other in requests[1:]:
        for key in ("name", "config", "dry_run", "yes"):
            if getattr(other, key) != getattr(first, key):
                raise MusicsweepError(
                    f"-m: every combination must share one {key}: a multirun is one sweep, on one backend and store"
                )
    unique: dict[str, dict[str, Any]] = {}
    for request in requests:
        for variant in request.variants:
            content = canonical_json({k: v for k, v in variant.items() if k != NAME_KEY})
            unique.setdefault(content, variant)
    variants = list(unique.values())
    name = first.name or stable_name(variants, first.config.max_duration_s)
    return run_sweep(variants, name, config=first.config, dry_run=first.dry_run, yes=first.yes)


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    try:
        run_requests([request_from_cfg(cfg)])
    except MusicsweepError as error:  # Hydra would wrap it in a multi-line report
        raise SystemExit(report_error(error)) from None


def report_error(error: Exception) -> int:
    """Print `error` as one line on stderr; returns the exit status for errors."""
    message = str(error).split("Config search path:")[0]  # Hydra appends its search path; not useful here
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the Hydra app; any error is one line on stderr and exit status 2."""
    args = [FLAGS.get(arg, arg) for arg in (sys.argv[1:] if argv is None else argv)]
    args.sort(key=lambda arg: arg not in ("-m", "--multirun"))  # Hydra's parser wants -m before the overrides
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's multi-line report
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], *args]
    try:
        app()
    except (MusicsweepError, HydraException, OmegaConfBaseException) as error:
        if full_error:
            raise
        return report_error(error)
    finally:
        sys.argv = saved_argv
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR")
    return 0
