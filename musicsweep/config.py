"""`musicsweep.yaml`: where it is found, and typed, validated objects built from it.

Search order: `$MUSICSWEEP_CONFIG`, then `musicsweep.yaml` in the current folder and its parents
up to the git root, then built-in defaults (local backend, local store `./runs`). Every error
names the file and the key. Backends parse their own section with `typed_section`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from musicsweep.errors import MusicsweepError

CONFIG_NAME = "musicsweep.yaml"
BACKEND_NAMES = ("local", "ssh", "slurm", "ec2", "runpod")
T = TypeVar("T")


@dataclass(frozen=True)
class StoreConfig:
    """Where results go: a folder, or `s3://bucket/prefix` with optional S3 endpoint settings."""

    url: str = "./runs"
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None


@dataclass(frozen=True)
class EngineConfig:
    """How workers generate: batch size (`auto` or a number), device, dtype, decode loop, normalisation."""

    batch_size: int | str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    decoder: str = "fast"  # fast: our own decode loop (engine/decode.py); hf: transformers' generate
    normalize: str = "peak"
    peak_dbfs: float = -1.0
    loudness_lufs: float = -14.0
    hf_home: str | None = None


@dataclass(frozen=True)
class Config:
    backend: str = "local"
    store: StoreConfig = field(default_factory=StoreConfig)
    sweeps_dir: Path = Path("runs")
    engine: EngineConfig = field(default_factory=EngineConfig)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
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
    known = {"backend", "store", "sweeps_dir", "engine", "backends"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MusicsweepError(f"{source}: unknown key {unknown[0]!r} (known: {sorted(known)})")
    backend = raw.get("backend", "local")
    if backend not in BACKEND_NAMES:
        raise MusicsweepError(f"{source}: key 'backend': unknown backend {backend!r} (known: {list(BACKEND_NAMES)})")
    store_raw = raw.get("store", {})
    store_raw = {"url": store_raw} if isinstance(store_raw, str) else store_raw
    store = typed_section(StoreConfig, store_raw, f"{source}: key 'store'")
    if not store.url.startswith("s3://"):
        store = dataclasses.replace(store, url=str(resolve_path(store.url, base_dir)))
    backends = raw.get("backends") or {}
    if not isinstance(backends, dict):
        raise MusicsweepError(f"{source}: key 'backends' must be a mapping")
    for name, section in backends.items():
        if name not in BACKEND_NAMES:
            raise MusicsweepError(f"{source}: key 'backends.{name}': unknown backend (known: {list(BACKEND_NAMES)})")
        if section is not None and not isinstance(section, dict):
            raise MusicsweepError(f"{source}: key 'backends.{name}' must be a mapping")
    engine = typed_section(EngineConfig, raw.get("engine") or {}, f"{source}: key 'engine'")
    validate_engine(engine, f"{source}: key 'engine'")
    return Config(
        backend=backend,
        store=store,
        sweeps_dir=resolve_path(str(raw.get("sweeps_dir", "runs")), base_dir),
        engine=engine,
        backends=backends,
        source=source,
        base_dir=base_dir,
    )


def validate_engine(engine: EngineConfig, where: str) -> None:
    if isinstance(engine.batch_size, str) and engine.batch_size != "auto":
        raise MusicsweepError(f"{where}.batch_size: expected 'auto' or a positive integer, got {engine.batch_size!r}")
    if isinstance(engine.batch_size, int) and engine.batch_size < 1:
        raise MusicsweepError(f"{where}.batch_size: must be at least 1, got {engine.batch_size}")
    choices = {
        "device": ("auto", "cpu", "cuda"),
        "dtype": ("auto", "float32", "float16", "bfloat16"),
        "decoder": ("fast", "hf"),
        "normalize": ("peak", "loudness", "none"),
    }
    for key, allowed in choices.items():
        value = getattr(engine, key)
        if value not in allowed and not (key == "device" and value.startswith("cuda:")):
            raise MusicsweepError(f"{where}.{key}: expected one of {list(allowed)}, got {value!r}")


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
