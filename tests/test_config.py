"""musicsweep.yaml: search order, defaults, and errors that name the file and key."""

import logging
import logging.handlers
from pathlib import Path

import pytest

from musicsweep import MusicsweepError
from musicsweep.config import find_config_file, load_config


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSICSWEEP_CONFIG", raising=False)
    config = load_config()
    assert config.backend == "local"
    assert Path(config.store.url) == tmp_path / "runs"


def test_search_walks_up_to_the_git_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUSICSWEEP_CONFIG", raising=False)
    (tmp_path / ".git").mkdir()
    (tmp_path / "musicsweep.yaml").write_text("backend: local\nstore: ./out\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert find_config_file() == tmp_path / "musicsweep.yaml"
    assert load_config().store.url == str(tmp_path / "out")


def test_search_stops_at_the_git_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUSICSWEEP_CONFIG", raising=False)
    (tmp_path / "musicsweep.yaml").write_text("backend: local\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    monkeypatch.chdir(repo)
    assert find_config_file() is None


def test_environment_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text("backend: local\nstore: s3://bucket/prefix\n")
    monkeypatch.setenv("MUSICSWEEP_CONFIG", str(chosen))
    assert load_config().store.url == "s3://bucket/prefix"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backend: local\nstore: [unclosed\n", "musicsweep.yaml:3: malformed YAML"),
        ("backend: kubernetes\n", "musicsweep.yaml: key 'backend': unknown backend 'kubernetes'"),
        ("colour: blue\n", "musicsweep.yaml: unknown key 'colour'"),
        ("engine:\n  batch_size: -2\n", "musicsweep.yaml: key 'engine'.batch_size: must be at least 1"),
        ("engine:\n  dtype: float8\n", "musicsweep.yaml: key 'engine'.dtype: expected one of"),
        ("backends:\n  local:\n    workers: many\n", "key 'backends.local'.workers: expected int"),
        ("- a list\n", "musicsweep.yaml: expected a mapping at the top level"),
    ],
)
def test_malformed_config_names_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text, message) -> None:
    path = tmp_path / "musicsweep.yaml"
    path.write_text(text)
    monkeypatch.setenv("MUSICSWEEP_CONFIG", str(path))
    with pytest.raises(MusicsweepError) as error:
        config = load_config()
        from musicsweep.backends import get_backend

        get_backend(config.backend, config)
    assert message in str(error.value)


def test_engine_decoder_is_read_as_token_loop_with_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "musicsweep.yaml"
    path.write_text("engine:\n  decoder: hf\n")
    monkeypatch.setenv("MUSICSWEEP_CONFIG", str(path))
    logger = logging.getLogger("musicsweep.config")
    seen = logging.handlers.BufferingHandler(capacity=10)
    logger.addHandler(seen)  # on the logger itself: seen whatever handlers the CLI set up above it
    try:
        assert load_config().engine.token_loop == "hf"
    finally:
        logger.removeHandler(seen)
    (record,) = seen.buffer
    assert record.getMessage().endswith("musicsweep.yaml: key 'engine'.decoder is deprecated: write token_loop")
    path.write_text("engine:\n  decoder: hf\n  token_loop: fast\n")
    with pytest.raises(MusicsweepError, match=r"engine'\.decoder: renamed to 'token_loop'; give only 'token_loop'"):
        load_config()
