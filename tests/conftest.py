"""Shared fixtures. Each real server (sshd, S3, SLURM, ...) lives in its own module under
`tests/fixtures/`, which is loaded here as a pytest plugin.

Tiers (docs/testing.md): a test is `e2e` when it starts a worker subprocess or a real server.
Tests that use a fixture from `tests/fixtures/` are marked here by that fixture alone; tests that
start workers carry the mark themselves, and `tier_guard` fails any unmarked test that starts a
worker or a server, so a new test cannot land in the quick tier by mistake.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

# Fixture modules import each other (servers, s3): rewrite their asserts whoever imports first.
pytest.register_assert_rewrite("tests.fixtures")
NOT_PLUGINS = {"__init__", "servers"}  # servers.py holds plain helpers for the fixture modules
pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem not in NOT_PLUGINS
)

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


E2E = "e2e"
FIXTURE_MODULES = "tests.fixtures."
# A child that is a worker (the local backend's script, or the module itself) or auto_pull, which
# polls one: what the quick tier leaves out. A sweep script run as a child (`python sweep.py`) is
# not caught here; a test that runs one to start workers carries the mark itself.
WORKER_COMMAND = re.compile(r"(^|/)worker_\d+\.sh$|^musicsweep\.(worker|auto_pull)$")


def is_e2e(item: pytest.Item) -> bool:
    return item.get_closest_marker(E2E) is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `e2e` every test that uses a server fixture (any fixture defined in `tests/fixtures/`)."""
    for item in items:
        fixture_info = getattr(item, "_fixtureinfo", None)
        if fixture_info is None:
            continue
        modules = {defs[-1].func.__module__ for defs in fixture_info.name2fixturedefs.values() if defs}
        if any(module.startswith(FIXTURE_MODULES) for module in modules):
            item.add_marker(E2E)


def starts_a_worker(args: object) -> bool:
    argv = [str(arg) for arg in args] if isinstance(args, list | tuple) else [str(args)]
    if not argv or "-c" in argv[1:2]:  # `bash -c ...`, `python -c ...`: inline snippets
        return False
    return any(WORKER_COMMAND.search(arg) for arg in argv[1:])


@pytest.fixture(autouse=True)
def tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test not marked `e2e` fails as soon as it starts a worker process: mark it `e2e`."""
    if is_e2e(request.node):
        yield
        return
    real_init = subprocess.Popen.__init__

    def guarded_init(self: subprocess.Popen, args, *rest, **kwargs) -> None:
        if starts_a_worker(args):
            pytest.fail(f"{request.node.nodeid} starts a worker ({args!r}): mark it @pytest.mark.e2e", pytrace=False)
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_init)
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> None:
    """A server fixture taken with `request.getfixturevalue` by a test not marked `e2e` fails it."""
    item = getattr(request, "_pyfuncitem", None)
    if item is not None and fixturedef.func.__module__.startswith(FIXTURE_MODULES) and not is_e2e(item):
        pytest.fail(f"{item.nodeid} starts {fixturedef.argname}: mark it @pytest.mark.e2e", pytrace=False)
