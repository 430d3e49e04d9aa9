"""The two tiers of the suite (docs/testing.md): a test is `e2e` when it starts a worker subprocess
or a real server; `./scripts/test --quick` runs the rest (`-m "not e2e"`).

A test that uses a fixture from `tests/fixtures/` (each starts a server or a stand-in) is marked
here by that fixture alone; a test that starts workers carries the mark itself. Any test left
unmarked that starts a worker or takes a server fixture anyway fails with a line saying to mark it,
so a new test cannot land in the quick tier by mistake. This is a plugin (loaded by conftest.py),
not conftest code: a conftest's hooks never see session-wide fixtures, set up by the session.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

E2E = "e2e"
FIXTURE_MODULES = "tests.fixtures."
# A child that is a worker (the local backend's script, or the module itself) or auto_pull, which
# polls one: what the quick tier leaves out. A sweep script run as a child (`python sweep.py`) is
# not caught here; a test that runs one to start workers carries the mark itself.
WORKER_COMMAND = re.compile(r"(^|/)worker_\d+\.sh$|^musicsweep\.(worker|auto_pull)$")


def is_e2e(item: pytest.Item) -> bool:
    return item.get_closest_marker(E2E) is not None


# Session fixtures whose one server every test that uses it must share: under pytest-xdist
# (`--dist loadgroup`) those tests run in one group, so one process starts the server once.
XDIST_GROUPS = {"ray_cluster": "ray"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `e2e` every test that uses a server fixture (any fixture defined in `tests/fixtures/`),
    and put the users of a shared session server in its xdist group."""
    grouping = config.pluginmanager.hasplugin("xdist")
    for item in items:
        fixture_info = getattr(item, "_fixtureinfo", None)
        if fixture_info is None:
            continue
        modules = {defs[-1].func.__module__ for defs in fixture_info.name2fixturedefs.values() if defs}
        if any(module.startswith(FIXTURE_MODULES) for module in modules):
            item.add_marker(E2E)
        names = set(fixture_info.names_closure)
        harness = getattr(item, "callspec", None) and item.callspec.params.get("harness")
        if harness:  # a conformance harness takes its backend's `NAME_cluster` with getfixturevalue
            names.add(f"{harness}_cluster")
        groups = {XDIST_GROUPS[name] for name in names if name in XDIST_GROUPS}
        if grouping and groups:
            item.add_marker(pytest.mark.xdist_group(name=min(groups)))


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
