"""Shared fixtures. Each real server (sshd, S3, SLURM, ...) lives in its own module under
`tests/fixtures/`, which is loaded here as a pytest plugin; `tests/tiers.py` (also a plugin, so
its hooks see session-wide fixtures too) sorts tests into the quick and the e2e tier.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Bytecode is kept, whatever the caller's shell says: hundreds of processes of the suite (workers,
# the doctor's probes, the test processes) import torch and transformers, and with
# PYTHONDONTWRITEBYTECODE set (some shells and CI images set it) each compiled both again, about
# 15 s of CPU a process here (docs/testing.md). Set before any plugin or test module is imported,
# and before xdist starts its test processes, which inherit this environment like every child.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Fixture modules import each other (servers, s3): rewrite their asserts whoever imports first.
pytest.register_assert_rewrite("tests.fixtures")
NOT_PLUGINS = {"__init__", "servers"}  # servers.py holds plain helpers for the fixture modules
pytest_plugins = [
    "tests.tiers",
    *sorted(
        f"tests.fixtures.{path.stem}"
        for path in (Path(__file__).parent / "fixtures").glob("*.py")
        if path.stem not in NOT_PLUGINS
    ),
]

PROJECT_CONFIG = """\
backend: local
store: ./runs
sweeps_dir: ./runs
engine:
  batch_size: 4
backends:
  local:
    workers: 1
    hourly_cost_usd: 0.5
"""


@pytest.fixture(autouse=True)
def calibration_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's estimate history (`$XDG_CACHE_HOME/musicsweep`) is its own, never the user's."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder with a local-backend musicsweep.yaml, as the current folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "musicsweep.yaml").write_text(PROJECT_CONFIG)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MUSICSWEEP_CONFIG", str(folder / "musicsweep.yaml"))
    monkeypatch.setenv("MUSICSWEEP_HEARTBEAT_S", "2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.pop("AWS_PROFILE", None)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model written with save_pretrained, to test the real from_pretrained path."""
    from musicsweep.engine.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))
