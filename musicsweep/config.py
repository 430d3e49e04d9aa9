"""`musicsweep.yaml`: where it is found, and typed, validated objects built from it.

Search order: `$MUSICSWEEP_CONFIG`, then `musicsweep.yaml` in the current folder and its parents
up to the git root, then built-in defaults (local backend, local store `./runs`). Every error
names the file and the key. Backends parse their own section with `typed_section`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from musicsweep.backends.registry import BACKEND_NAMES, unknown_backend_message
from musicsweep.errors import MusicsweepError

CONFIG_NAME = "musicsweep.yaml"
DEFAULT_OUTAGE_BUDGET_S = 300.0  # how long a worker rides out a store outage before it gives up
T = TypeVar("T")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_LOOKALIKE = re.compile(r"^s3:(?!//)|^s3//", re.IGNORECASE)


def at_least(minimum: float, default: Any) -> Any:
    """A dataclass field that `typed_section` refuses below `minimum` (a count, a price, a budget)."""
    return field(default=default, metadata={"min": minimum})


@dataclass(frozen=True)
class StoreConfig:
    """Where results go: a folder, or `s3://bucket/prefix` with optional S3 endpoint settings."""

    url: str = "./runs"
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    outage_budget_s: float = at_least(0, DEFAULT_OUTAGE_BUDGET_S)


@dataclass(frozen=True)
class EngineConfig:
    """How workers generate: batch size (`auto` or a number), device, dtype, token loop, normalisation."""

    batch_size: int | str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    token_loop: str = "fast"  # fast: our own (engine/token_loop.py); hf: transformers' generate
    normalize: str = "peak"
    peak_dbfs: float = -1.0
    loudness_lufs: float = -14.0
    hf_home: str | None = None


@dataclass(frozen=True)
class EstimateConfig:
    """`estimate`: figures that beat the calibration from history (`costs/estimate.py`), and
    whether history is used, and shared through the store."""

    throughput: dict[str, float] = field(default_factory=dict)  # model -> audio s per wall s, <= 30 s clips
    model_load_s: dict[str, float] = field(default_factory=dict)  # model -> seconds
    boot_s: float | None = at_least(0, None)  # cloud machine start to worker start
    setup_s: float | None = at_least(0, None)  # worker start to first model load
    upload_s: float | None = at_least(0, None)  # per clip
    idle_s: float | None = at_least(0, None)  # per worker
    calibration: bool = True  # use and record history in the cache folder
    share: bool = False  # also in the store, so a team shares it


@dataclass(frozen=True)
class RecoveryConfig:
    """How a sweep recovers without paying twice (README: Recovery).

    A worker's claim on a clip is renewed by every heartbeat and taken over once another worker has
    watched it unrenewed for `lease_s` on its own clock, so a lost host or an interrupted machine is
    taken over one lease (plus a heartbeat) after its last renewal; a job is launched at most
    `max_attempts` times, `backoff_s` × 2^(attempt-1) apart. `stall_after_minutes` left unset
    follows each launch's estimate (`sweep.observe.stall_after_s`).
    """

    lease_s: float = 300.0
    max_attempts: int = 3
    backoff_s: float = 30.0
    stall_after_minutes: float | None = None
    start_timeout_minutes: float = 30.0


@dataclass(frozen=True)
class WorkerConfig:
    """How work is assigned to workers (README: How work is assigned).

    With `take_from_others` a worker that has finished its own shard takes clips of its sweep that
    no live worker holds (`worker/pool.py`); off, each worker makes only its fixed shard.
    """

    take_from_others: bool = True


@dataclass(frozen=True)
class Config:
    backend: str = "local"
    store: StoreConfig = field(default_factory=StoreConfig)
    sweeps_dir: Path = Path("runs")
    engine: EngineConfig = field(default_factory=EngineConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_duration_s: float = 1800.0  # the longest clip a sweep may ask for (job.MAX_DURATION_S)
    source: str = "built-in defaults"
    base_dir: Path = field(default_factory=Path.cwd)

    def backend_section(self, name: str) -> dict[str, Any]:
        return dict(self.backends.get(name) or {})

    def where(self, key: str) -> str:
        return f"{self.source}: key '{key}'"

    def with_overrides(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def find_config_file(start: Path | None = None) -> Path | None:
    """Apply the search order; None means built-in defaults."""
    explicit = os.environ.get("MUSICSWEEP_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise MusicsweepError(f"MUSICSWEEP_CONFIG={explicit}: no such file")
        return path
    folder = (start or Path.cwd()).resolve()
    for candidate in [folder, *folder.parents]:
        if (candidate / CONFIG_NAME).is_file():
            return candidate / CONFIG_NAME
        if (candidate / ".git").exists():
            break
    return None


def load_config(path: Path | None = None) -> Config:
    path = path or find_config_file()
    if path is None:
        return parse_config({}, "built-in defaults", Path.cwd())
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as error:
        mark, context = getattr(error, "problem_mark", None), getattr(error, "context_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        opened = f" ({error.context} at line {context.line + 1})" if context else ""
        raise MusicsweepError(f"{path}{line}: malformed YAML: {getattr(error, 'problem', error)}{opened}") from None
    except OSError as error:
        raise MusicsweepError(f"{path}: cannot read: {error.strerror}") from None
    return parse_config(raw, str(path), Path(path).resolve().parent)


def parse_config(raw: Any, source: str, base_dir: Path) -> Config:
    if not isinstance(raw, dict):
        raise MusicsweepError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    known = {"backend", "store", "sweeps_dir", "engine", "estimate", "backends", "max_duration_s", "recovery", "worker"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MusicsweepError(f"{source}: unknown key {unknown[0]!r} (known: {sorted(known)})")
    backend = raw.get("backend", "local")
    if backend not in BACKEND_NAMES:
        raise MusicsweepError(unknown_backend_message(backend, f"{source}: key 'backend'"))
    store_raw = raw.get("store", {})
    store_raw = {"url": store_raw} if isinstance(store_raw, str) else store_raw
    store = typed_section(StoreConfig, store_raw, f"{source}: key 'store'")
    check_store_url(store.url, f"{source}: key 'store.url'")
    if not store.url.startswith("s3://"):
        store = dataclasses.replace(store, url=str(resolve_path(store.url, base_dir)))
    backends = raw.get("backends") or {}
    if not isinstance(backends, dict):
        raise MusicsweepError(f"{source}: key 'backends' must be a mapping")
    for name, section in backends.items():
        if name not in BACKEND_NAMES:
            raise MusicsweepError(unknown_backend_message(name, f"{source}: key 'backends.{name}'"))
        if section is not None and not isinstance(section, dict):
            raise MusicsweepError(f"{source}: key 'backends.{name}' must be a mapping")
    engine_raw = renamed_keys(raw.get("engine") or {}, ENGINE_RENAMED, f"{source}: key 'engine'")
    engine = typed_section(EngineConfig, engine_raw, f"{source}: key 'engine'")
    validate_engine(engine, f"{source}: key 'engine'")
    estimate = typed_section(EstimateConfig, raw.get("estimate") or {}, f"{source}: key 'estimate'")
    validate_estimate(estimate, f"{source}: key 'estimate'")
    max_duration_s = _coerce(raw.get("max_duration_s", 1800.0), float, f"{source}: key 'max_duration_s'")
    if not max_duration_s > 0:
        raise MusicsweepError(f"{source}: key 'max_duration_s': must be positive, got {max_duration_s:g}")
    recovery = typed_section(RecoveryConfig, raw.get("recovery") or {}, f"{source}: key 'recovery'")
    validate_recovery(recovery, f"{source}: key 'recovery'")
    worker = typed_section(WorkerConfig, raw.get("worker") or {}, f"{source}: key 'worker'")
    return Config(
        max_duration_s=max_duration_s,
        backend=backend,
        store=store,
        sweeps_dir=resolve_path(str(raw.get("sweeps_dir", "runs")), base_dir),
        engine=engine,
        estimate=estimate,
        recovery=recovery,
        worker=worker,
        backends=backends,
        source=source,
        base_dir=base_dir,
    )


def check_store_url(url: str, where: str) -> None:
    """An `s3://` URL must name a valid bucket; a near miss (`s3:/b`, `S3:b`) is not taken for a folder."""
    if url.startswith("s3://"):
        bucket = url.removeprefix("s3://").partition("/")[0]
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise MusicsweepError(
                f"{where}: invalid bucket name {bucket!r} in {url!r} (3-63 characters: lowercase letters, "
                "digits, '.' and '-', starting and ending with a letter or digit)"
            )
    elif _S3_LOOKALIKE.match(url):
        raise MusicsweepError(f"{where}: {url!r} looks like an S3 URL: write s3://bucket/prefix (two slashes)")


ENGINE_RENAMED = {"decoder": "token_loop"}  # old key -> new key, still read with a warning


def renamed_keys(raw: Any, renamed: dict[str, str], where: str) -> Any:
    """Read a section's old key names as the new ones, with a one-line warning; both at once is an error."""
    if not isinstance(raw, dict) or not set(raw) & set(renamed):
        return raw
    raw = dict(raw)
    for old, new in renamed.items():
        if old not in raw:
            continue
        if new in raw:
            raise MusicsweepError(f"{where}.{old}: renamed to {new!r}; give only {new!r}")
        logging.getLogger(__name__).warning("%s.%s is deprecated: write %s", where, old, new)
        raw[new] = raw.pop(old)
    return raw


def validate_engine(engine: EngineConfig, where: str) -> None:
    if isinstance(engine.batch_size, str) and engine.batch_size != "auto":
        raise MusicsweepError(f"{where}.batch_size: expected 'auto' or a positive integer, got {engine.batch_size!r}")
    if isinstance(engine.batch_size, int) and engine.batch_size < 1:
        raise MusicsweepError(f"{where}.batch_size: must be at least 1, got {engine.batch_size}")
    choices = {
        "device": ("auto", "cpu", "cuda"),
        "dtype": ("auto", "float32", "float16", "bfloat16"),
        "token_loop": ("fast", "hf"),
        "normalize": ("peak", "loudness", "none"),
    }
    for key, allowed in choices.items():
        value = getattr(engine, key)
        if value not in allowed and not (key == "device" and value.startswith("cuda:")):
            raise MusicsweepError(f"{where}.{key}: expected one of {list(allowed)}, got {value!r}")


def validate_estimate(estimate: EstimateConfig, where: str) -> None:
    """The per-model figures (`at_least` checks the others)."""
    for model, value in estimate.throughput.items():
        if value <= 0:
            raise MusicsweepError(f"{where}.throughput.{model}: must be positive, got {value}")
    for model, value in estimate.model_load_s.items():
        if value < 0:
            raise MusicsweepError(f"{where}.model_load_s.{model}: must be at least 0, got {value}")


def validate_recovery(recovery: RecoveryConfig, where: str) -> None:
    if recovery.max_attempts < 1:
        raise MusicsweepError(f"{where}.max_attempts: must be at least 1, got {recovery.max_attempts}")
    for key in ("lease_s", "stall_after_minutes", "start_timeout_minutes"):
        if getattr(recovery, key) is not None and not getattr(recovery, key) > 0:
            raise MusicsweepError(f"{where}.{key}: must be positive, got {getattr(recovery, key)}")
    if recovery.backoff_s < 0:
        raise MusicsweepError(f"{where}.backoff_s: must not be negative, got {recovery.backoff_s}")


def resolve_path(text: str, base_dir: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def typed_section(cls: type[T], raw: Any, where: str) -> T:
    """Build dataclass `cls` from a mapping, checking unknown keys and value types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MusicsweepError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise MusicsweepError(f"{where}.{unknown[0]}: unknown key (known: {sorted(fields)})")
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in raw.items()}
    for key, value in values.items():
        minimum = fields[key].metadata.get("min")
        if minimum is not None and isinstance(value, int | float) and not value >= minimum:
            raise MusicsweepError(f"{where}.{key}: must be at least {minimum}, got {value!r}")
    try:
        return cls(**values)
    except TypeError as error:
        raise MusicsweepError(f"{where}: {error}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a simple type hint (scalars, Path, list/tuple/dict of them, unions)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, where)
            except MusicsweepError as error:
                errors.append(str(error))
        raise MusicsweepError(f"{where}: expected {_hint_name(hint)}, got {value!r}")
    if hint is type(None):
        if value is None:
            return None
        raise MusicsweepError(f"{where}: expected null")
    if hint is Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise MusicsweepError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise MusicsweepError(f"{where}: expected a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return {_coerce(k, key_hint, where): _coerce(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return typed_section(hint, value, where)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str):
        return Path(value).expanduser()
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise MusicsweepError(f"{where}: expected {_hint_name(hint)}, got {value!r}")


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
